//! The CRD: the committed YAML matches the generated one, its CEL rules
//! accept valid resources and refuse invalid ones (evaluated with a CEL
//! interpreter), and every example manifest is as valid as its name says.

use std::path::{Path, PathBuf};

use cel_interpreter::{Context, Program, Value as CelValue};
use kadi::links::TargetPolicy;
use kadi_controller::resource::{crd_yaml, ShortLink};
use kadi_controller::validate::declared_link;
use kube::CustomResourceExt;
use serde_json::{json, Value};

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn committed_crds_match_the_generated_one() {
    let generated = crd_yaml();
    for file in ["manifests/crd.yaml", "charts/kadi/crds/shortlink.yaml"] {
        let committed = std::fs::read_to_string(repository().join(file)).expect(file);
        assert!(
            committed == generated,
            "{file} differs from the generated CRD; run \
             `cargo run -p kadi-controller -- crd > {file}`"
        );
    }
}

#[test]
fn printer_columns_show_code_url_phase_clicks_expiry_and_age() {
    let crd = serde_json::to_value(ShortLink::crd()).unwrap();
    let columns: Vec<&str> = crd["spec"]["versions"][0]["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c.get("priority").is_none())
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        columns,
        ["Code", "URL", "Phase", "Clicks", "Expires", "Age"]
    );
    let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    assert_eq!(
        spec["properties"]["redirectStatus"]["enum"],
        json!([301, 302, 307, 308])
    );
    assert_eq!(spec["properties"]["url"]["format"], "uri");
    assert_eq!(spec["properties"]["maxVisits"]["minimum"], 1.0);
    assert_eq!(spec["properties"]["expiresAt"]["format"], "date-time");
    assert_eq!(spec["required"], json!(["url"]));
}

/// A CEL rule of the schema and where it applies.
struct Rule {
    path: Vec<String>,
    rule: String,
    message: String,
}

fn collect_rules(schema: &Value, path: Vec<String>, rules: &mut Vec<Rule>) {
    for rule in schema["x-kubernetes-validations"]
        .as_array()
        .into_iter()
        .flatten()
    {
        rules.push(Rule {
            path: path.clone(),
            rule: rule["rule"].as_str().unwrap().to_owned(),
            message: rule["message"].as_str().unwrap_or("").to_owned(),
        });
    }
    for (name, property) in schema["properties"].as_object().into_iter().flatten() {
        let mut below = path.clone();
        below.push(name.clone());
        collect_rules(property, below, rules);
    }
}

fn crd_rules() -> Vec<Rule> {
    let crd = serde_json::to_value(ShortLink::crd()).unwrap();
    let mut rules = Vec::new();
    collect_rules(
        &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"],
        Vec::new(),
        &mut rules,
    );
    rules
}

fn at<'a>(object: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(object, |value, key| value.get(key))
}

/// The messages of the rules `object` breaks, as the API server would
/// evaluate them on create (`old` absent) or update.
fn violations(object: &Value, old: Option<&Value>) -> Vec<String> {
    let mut broken = Vec::new();
    for rule in crd_rules() {
        let Some(value) = at(object, &rule.path) else {
            continue;
        };
        let transition = rule.rule.contains("oldSelf");
        let old_value = old.and_then(|old| at(old, &rule.path));
        if transition && old_value.is_none() {
            continue;
        }
        let program = Program::compile(&rule.rule)
            .unwrap_or_else(|e| panic!("rule {:?} does not compile: {e:?}", rule.rule));
        let mut context = Context::default();
        context.add_variable("self", value.clone()).unwrap();
        if let Some(old_value) = old_value {
            context.add_variable("oldSelf", old_value.clone()).unwrap();
        }
        match program.execute(&context) {
            Ok(CelValue::Bool(true)) => {}
            Ok(CelValue::Bool(false)) => broken.push(rule.message.clone()),
            other => panic!("rule {:?} on {value} gave {other:?}", rule.rule),
        }
    }
    broken
}

fn resource(name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "kadi.dev/v1alpha1",
        "kind": "ShortLink",
        "metadata": {"name": name, "namespace": "marketing"},
        "spec": spec,
    })
}

#[test]
fn every_rule_of_the_crd_compiles() {
    let rules = crd_rules();
    assert_eq!(
        rules.len(),
        4,
        "rules: {:?}",
        rules.iter().map(|r| &r.rule).collect::<Vec<_>>()
    );
    for rule in rules {
        assert!(Program::compile(&rule.rule).is_ok(), "{}", rule.rule);
        assert!(!rule.message.is_empty(), "{} has no message", rule.rule);
    }
}

#[test]
fn cel_rules_accept_valid_resources() {
    for spec in [
        json!({"url": "https://example.com/launch/2026/notes", "shortCode": "launch", "ttl": "72h"}),
        json!({"url": "http://example.com", "expiresAt": "2026-12-31T23:59:59Z"}),
        json!({"url": "https://example.com/a?b=c#d"}),
    ] {
        let object = resource("launch-notes", spec.clone());
        assert_eq!(violations(&object, None), Vec::<String>::new(), "{spec}");
    }
}

#[test]
fn cel_rules_refuse_invalid_resources() {
    let cases = [
        (
            resource(
                "case-one",
                json!({"url": "https://example.com/", "ttl": "1h",
                "expiresAt": "2026-12-31T23:59:59Z"}),
            ),
            "set ttl or expiresAt, not both",
        ),
        (
            resource("case-two", json!({"url": "ftp://example.com/file"})),
            "url must be an absolute http or https URL",
        ),
        (
            resource("case-three", json!({"url": "javascript:alert(1)"})),
            "url must be an absolute http or https URL",
        ),
        (
            resource("launch.notes", json!({"url": "https://example.com/"})),
            "metadata.name is not a valid short code; set spec.shortCode",
        ),
    ];
    for (object, message) in cases {
        assert_eq!(violations(&object, None), [message], "{object}");
    }
}

#[test]
fn the_short_code_may_not_change_once_set() {
    let message = "the short code may not change once set";
    let old = resource(
        "launch-notes",
        json!({"url": "https://example.com/", "shortCode": "launch"}),
    );
    let changed = resource(
        "launch-notes",
        json!({"url": "https://example.com/", "shortCode": "other"}),
    );
    assert_eq!(violations(&changed, Some(&old)), [message]);
    let removed = resource("launch-notes", json!({"url": "https://example.com/"}));
    assert_eq!(violations(&removed, Some(&old)), [message]);
    let retargeted = resource(
        "launch-notes",
        json!({"url": "https://example.com/v2", "shortCode": "launch"}),
    );
    assert!(violations(&retargeted, Some(&old)).is_empty());

    // Spelling out the name it defaulted to is no change.
    let defaulted = resource("launch-notes", json!({"url": "https://example.com/"}));
    let spelled = resource(
        "launch-notes",
        json!({"url": "https://example.com/", "shortCode": "launch-notes"}),
    );
    assert!(violations(&spelled, Some(&defaulted)).is_empty());
    let other = resource(
        "launch-notes",
        json!({"url": "https://example.com/", "shortCode": "x-launch"}),
    );
    assert_eq!(violations(&other, Some(&defaulted)), [message]);
}

#[test]
fn example_manifests_are_as_valid_as_their_names_say() {
    let dir = repository().join("manifests/examples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("manifests/examples")
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let (mut valid, mut invalid) = (0, 0);
    let policy = TargetPolicy::for_public_url(&"https://sho.rt".parse().unwrap());
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let shortlink: ShortLink = serde_yaml::from_str(&text)
            .unwrap_or_else(|e| panic!("{name} is not a ShortLink: {e}"));
        let object: Value = serde_yaml::from_str(&text).unwrap();
        let broken = violations(&object, None);
        let mut checked = shortlink.clone();
        checked.metadata.creation_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                "2026-06-01T00:00:00Z".parse().unwrap(),
            ));
        let declared = declared_link(&checked, &policy);
        if name.starts_with("invalid-") {
            invalid += 1;
            assert!(!broken.is_empty(), "{name} passes the CRD's rules");
            assert!(
                declared.is_err(),
                "{name} passes the controller's validation"
            );
        } else {
            valid += 1;
            assert!(broken.is_empty(), "{name} breaks {broken:?}");
            assert!(declared.is_ok(), "{name}: {declared:?}");
        }
    }
    assert!(
        valid >= 3 && invalid >= 1,
        "{valid} valid and {invalid} invalid examples"
    );
}
