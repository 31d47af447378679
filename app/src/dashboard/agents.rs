//! A small user-agent classifier: which browser family and which kind of
//! device a click came from, for the analytics breakdown.
//!
//! Limitation: it reads well-known tokens only. Rare browsers count as
//! "Other" and clients that lie about themselves are believed; that is
//! enough for a breakdown, not for security decisions.

/// The browser family of a user agent.
pub fn browser(agent: Option<&str>) -> &'static str {
    let Some(agent) = agent.filter(|a| !a.trim().is_empty()) else {
        return "Unknown";
    };
    if is_automated(agent) {
        return "Bot or tool";
    }
    // Order matters: Edge, Opera and Samsung also say Chrome; Chrome also
    // says Safari.
    let families: [(&[&str], &str); 7] = [
        (&["Edg/", "EdgA/", "EdgiOS/"], "Edge"),
        (&["OPR/", "Opera"], "Opera"),
        (&["SamsungBrowser/"], "Samsung Internet"),
        (&["HeadlessChrome/"], "Headless Chrome"),
        (&["Chrome/", "CriOS/", "Chromium/"], "Chrome"),
        (&["Firefox/", "FxiOS/"], "Firefox"),
        (&["Safari/"], "Safari"),
    ];
    families
        .iter()
        .find(|(tokens, _)| tokens.iter().any(|token| agent.contains(token)))
        .map_or("Other", |(_, name)| name)
}

/// The kind of device of a user agent.
pub fn device(agent: Option<&str>) -> &'static str {
    let Some(agent) = agent.filter(|a| !a.trim().is_empty()) else {
        return "Unknown";
    };
    if is_automated(agent) {
        return "Bot or tool";
    }
    let android = agent.contains("Android");
    if agent.contains("iPad") || agent.contains("Tablet") || (android && !agent.contains("Mobile"))
    {
        "Tablet"
    } else if agent.contains("Mobi") || agent.contains("iPhone") || android {
        "Mobile"
    } else if ["Windows", "Macintosh", "X11", "Linux", "CrOS"]
        .iter()
        .any(|token| agent.contains(token))
    {
        "Desktop"
    } else {
        "Other"
    }
}

fn is_automated(agent: &str) -> bool {
    let lower = agent.to_ascii_lowercase();
    [
        "bot",
        "crawler",
        "spider",
        "curl/",
        "wget/",
        "python-",
        "go-http-client",
        "okhttp",
        "k6/",
    ]
    .iter()
    .any(|token| lower.contains(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHROME_LINUX: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
    const SAFARI_IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1";
    const EDGE_WINDOWS: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0";
    const FIREFOX_ANDROID_TABLET: &str =
        "Mozilla/5.0 (Android 14; Tablet; rv:133.0) Gecko/133.0 Firefox/133.0";

    #[test]
    fn browsers_are_told_apart() {
        assert_eq!(browser(Some(CHROME_LINUX)), "Chrome");
        assert_eq!(browser(Some(SAFARI_IPHONE)), "Safari");
        assert_eq!(browser(Some(EDGE_WINDOWS)), "Edge");
        assert_eq!(browser(Some(FIREFOX_ANDROID_TABLET)), "Firefox");
        assert_eq!(browser(Some("curl/8.5.0")), "Bot or tool");
        assert_eq!(browser(Some("Googlebot/2.1")), "Bot or tool");
        assert_eq!(browser(Some("Lynx/2.9")), "Other");
        assert_eq!(browser(None), "Unknown");
    }

    #[test]
    fn devices_are_told_apart() {
        assert_eq!(device(Some(CHROME_LINUX)), "Desktop");
        assert_eq!(device(Some(SAFARI_IPHONE)), "Mobile");
        assert_eq!(device(Some(FIREFOX_ANDROID_TABLET)), "Tablet");
        assert_eq!(device(Some("curl/8.5.0")), "Bot or tool");
        assert_eq!(device(Some("")), "Unknown");
    }
}
