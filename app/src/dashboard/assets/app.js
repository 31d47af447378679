// Kadi dashboard: the little behaviour the pages have. Everything works
// without this script except copying to the clipboard and the delete prompt.
"use strict";

function copyText(button) {
  const target = document.getElementById(button.dataset.copy);
  if (!target) return;
  const text = target.value || target.textContent;
  const done = () => {
    button.textContent = "Copied";
    button.setAttribute("aria-live", "polite");
    setTimeout(() => { button.textContent = "Copy"; }, 2000);
  };
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(text).then(done, () => fallbackCopy(target, done));
  } else {
    fallbackCopy(target, done);
  }
}

function fallbackCopy(target, done) {
  if (typeof target.select === "function") {
    target.select();
    if (document.execCommand("copy")) done();
  }
}

document.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-copy]");
  if (button) {
    event.preventDefault();
    copyText(button);
  }
});

document.addEventListener("submit", (event) => {
  const form = event.target;
  if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
    event.preventDefault();
  }
});
