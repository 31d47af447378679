"""The Dockerfile (which cannot be built here) keeps its promises: a cached
dependency layer, both binaries, and small non-root final images without a
shell."""

import re

from conftest import REPO

DOCKERFILE = (REPO / "Dockerfile").read_text()


def stages():
    """Stage name -> its instructions."""
    result, name = {}, None
    for line in DOCKERFILE.splitlines():
        m = re.match(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", line, re.I)
        if m:
            name = m.group(2) or m.group(1)
            result[name] = [line]
        elif name and line.strip() and not line.lstrip().startswith("#"):
            result[name].append(line)
    return result


def test_dependencies_are_cooked_before_the_sources_are_copied():
    builder = "\n".join(stages()["builder"])
    assert builder.index("cargo chef cook") < builder.index("COPY . .")
    assert "--locked" in builder


def test_final_images_run_one_binary_as_non_root_without_a_shell():
    all_stages = stages()
    for target, binary in (("kadi", "kadi"), ("kadi-controller", "kadi-controller")):
        lines = all_stages[target]
        text = "\n".join(lines)
        assert lines[0].split()[1].startswith("gcr.io/distroless/"), target
        assert f"/out/{binary} /usr/local/bin/{binary}" in text
        assert re.search(r"^USER 65532:65532$", text, re.M), target
        assert f'ENTRYPOINT ["/usr/local/bin/{binary}"]' in text
        assert "RUN " not in text, "final stages have no shell to RUN with"


def test_build_context_keeps_crates_and_migrations():
    ignored = (REPO / ".dockerignore").read_text().split()
    for needed in ("app", "controller", "app/migrations", "Cargo.toml", "Cargo.lock"):
        assert needed not in ignored
    assert "target" in ignored and ".git" in ignored
