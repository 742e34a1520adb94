//! The Helm chart at deploy/helm/myset-operator.
//!
//! Helm is not obtainable here (not in Debian; no package on PyPI or npm ships the official
//! helm binary), so the chart is rendered by `render_chart` below: Go text/template from the
//! `gtmpl` crate, with Helm's `include` and the few sprig functions the chart uses implemented
//! after Helm's and sprig's Go sources. This is not Helm itself: its output is checked for what
//! a template means (parsed YAML), and anything it does not reproduce faithfully is an error,
//! not a guess. The chart keeps within what it implements (see templates/_helpers.tpl).
//! (Third-party PyPI wheels do embed Helm's Go library: `helm-python-sdk` 0.2.2, Helm 4.2.3,
//! rendered this chart, by hand, to the same objects as here; CI does not depend on it.)
//!
//! Checked here:
//! - the chart's crds/ holds deploy/crd.yaml byte for byte;
//! - the chart is the source of truth: rendered with its default values as release
//!   `myset-operator` in namespace `myset-system`, it makes the same objects as deploy/rbac.yaml
//!   and deploy/operator.yaml once Helm's own labels are dropped (and less deploy/'s Namespace,
//!   which `helm install --create-namespace` makes);
//! - values take effect (image, replicas, resources, scheduling, service account, RBAC, names);
//! - every rendering is strict-valid for the oldest and newest Kubernetes versions, with
//!   scripts/validate-k8s (kubernetes-validate from PyPI; skipped without it, except under CI).

mod validator;

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

use gtmpl::{Context, Func, FuncError, Template, Value};
use serde_json::{json, Value as Json};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn chart_dir() -> PathBuf {
    root().join("deploy/helm/myset-operator")
}

// ---------------------------------------------------------------------------------------------
// The renderer: `helm template RELEASE CHART -n NAMESPACE` for a chart without dependencies,
// without .Capabilities, .Files or lookup.

/// One rendered template file: its Helm source name and its YAML documents.
struct Rendered {
    manifests: Vec<(String, String)>,
    notes: String,
}

impl Rendered {
    /// The documents as `helm template` prints them.
    fn stream(&self) -> String {
        self.manifests
            .iter()
            .map(|(source, doc)| format!("---\n# Source: {source}\n{doc}\n"))
            .collect()
    }

    fn objects(&self) -> Vec<Json> {
        self.manifests
            .iter()
            .map(|(source, doc)| {
                serde_norway::from_str(doc)
                    .unwrap_or_else(|e| panic!("{source} is not YAML: {e}\n{doc}"))
            })
            .collect()
    }
}

thread_local! {
    /// The chart's template files, (name, text), for `include` (a gtmpl function is a plain
    /// `fn`, so it finds the templates here).
    static FILES: RefCell<Vec<(String, String)>> = const { RefCell::new(Vec::new()) };
}

/// Helm's `include`: executes the named template with the given data, as a string.
fn include(args: &[Value]) -> Result<Value, FuncError> {
    let [Value::String(name), data] = args else {
        return Err(FuncError::ExactlyXArgs("include".into(), 2));
    };
    let tmpl = template_set(name)?;
    tmpl.render(&Context::from(data.clone()))
        .map(Value::String)
        .map_err(|e| FuncError::Generic(format!("include {name:?}: {e}")))
}

fn template_set(name: &str) -> Result<Template, FuncError> {
    let mut tmpl = Template::with_name(name);
    tmpl.add_funcs(&FUNCS);
    FILES.with(|files| {
        for (file, text) in files.borrow().iter() {
            tmpl.add_template(file.clone(), text.clone())
                .map_err(|e| FuncError::Generic(format!("{file}: {e}")))?;
        }
        Ok::<_, FuncError>(())
    })?;
    Ok(tmpl)
}

const FUNCS: [(&str, Func); 10] = [
    ("include", include),
    ("default", default),
    ("trunc", trunc),
    ("trimSuffix", trim_suffix),
    ("contains", contains),
    ("replace", replace),
    ("quote", quote),
    ("toYaml", to_yaml),
    ("nindent", nindent),
    ("indent", indent),
];

fn string_arg(name: &str, v: &Value) -> Result<String, FuncError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        other => Err(FuncError::Generic(format!(
            "{name}: expected a string, got {other:?} (the test renderer does not convert it)"
        ))),
    }
}

fn int_arg(name: &str, v: &Value) -> Result<i64, FuncError> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .ok_or_else(|| FuncError::Generic(format!("{name}: {n} is not an integer"))),
        other => Err(FuncError::Generic(format!(
            "{name}: expected an integer, got {other:?}"
        ))),
    }
}

/// sprig's `empty`: nil, false, 0, and empty strings, lists and maps.
fn is_empty(v: &Value) -> bool {
    match v {
        Value::NoValue | Value::Nil => true,
        Value::Bool(b) => !b,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Map(m) | Value::Object(m) => m.is_empty(),
        Value::Number(n) => n
            .as_f64()
            .map_or_else(|| n.as_i64() == Some(0), |f| f == 0.0),
        Value::Function(_) => false,
    }
}

/// sprig `default DEFAULT GIVEN`: GIVEN unless it is empty.
fn default(args: &[Value]) -> Result<Value, FuncError> {
    match args {
        [d] => Ok(d.clone()),
        [d, given] => Ok(if is_empty(given) { d } else { given }.clone()),
        _ => Err(FuncError::AtLeastXArgs("default".into(), 1)),
    }
}

/// sprig `trunc N S`: the first N bytes (the last -N when negative).
fn trunc(args: &[Value]) -> Result<Value, FuncError> {
    let [c, s] = args else {
        return Err(FuncError::ExactlyXArgs("trunc".into(), 2));
    };
    let (c, s) = (int_arg("trunc", c)?, string_arg("trunc", s)?);
    if !s.is_ascii() {
        return Err(FuncError::Generic("trunc: non-ASCII input".into()));
    }
    let len = s.len() as i64;
    Ok(Value::String(if c >= 0 && len > c {
        s[..c as usize].to_string()
    } else if c < 0 && len > -c {
        s[(len + c) as usize..].to_string()
    } else {
        s
    }))
}

/// sprig `trimSuffix SUFFIX S`.
fn trim_suffix(args: &[Value]) -> Result<Value, FuncError> {
    let [suffix, s] = args else {
        return Err(FuncError::ExactlyXArgs("trimSuffix".into(), 2));
    };
    let (suffix, s) = (
        string_arg("trimSuffix", suffix)?,
        string_arg("trimSuffix", s)?,
    );
    Ok(Value::String(
        s.strip_suffix(suffix.as_str()).unwrap_or(&s).to_string(),
    ))
}

/// sprig `contains SUBSTR S`.
fn contains(args: &[Value]) -> Result<Value, FuncError> {
    let [sub, s] = args else {
        return Err(FuncError::ExactlyXArgs("contains".into(), 2));
    };
    let (sub, s) = (string_arg("contains", sub)?, string_arg("contains", s)?);
    Ok(Value::Bool(s.contains(sub.as_str())))
}

/// sprig `replace OLD NEW S`: every occurrence.
fn replace(args: &[Value]) -> Result<Value, FuncError> {
    let [old, new, s] = args else {
        return Err(FuncError::ExactlyXArgs("replace".into(), 3));
    };
    let s = string_arg("replace", s)?;
    Ok(Value::String(s.replace(
        string_arg("replace", old)?.as_str(),
        string_arg("replace", new)?.as_str(),
    )))
}

/// sprig `quote`: each non-nil argument as Go's %q, joined by spaces. Only printable ASCII
/// and the common escapes are reproduced.
fn quote(args: &[Value]) -> Result<Value, FuncError> {
    let mut out = Vec::new();
    for arg in args {
        let s = match arg {
            Value::NoValue | Value::Nil => continue,
            Value::String(s) => s.clone(),
            Value::Bool(b) => b.to_string(),
            Value::Number(n) if n.as_i64().is_some() => n.to_string(),
            other => {
                return Err(FuncError::Generic(format!(
                    "quote: {other:?} is not reproduced by the test renderer"
                )))
            }
        };
        let mut q = String::from("\"");
        for ch in s.chars() {
            match ch {
                '"' => q.push_str("\\\""),
                '\\' => q.push_str("\\\\"),
                '\n' => q.push_str("\\n"),
                '\t' => q.push_str("\\t"),
                '\r' => q.push_str("\\r"),
                ' '..='~' => q.push(ch),
                _ => {
                    return Err(FuncError::Generic(format!(
                        "quote: {ch:?} is not reproduced by the test renderer"
                    )))
                }
            }
        }
        q.push('"');
        out.push(q);
    }
    Ok(Value::String(out.join(" ")))
}

/// sprig `indent N S`: every line of S indented by N spaces.
fn indent(args: &[Value]) -> Result<Value, FuncError> {
    let [n, s] = args else {
        return Err(FuncError::ExactlyXArgs("indent".into(), 2));
    };
    let n = int_arg("indent", n)?;
    let pad = " ".repeat(usize::try_from(n).map_err(|_| FuncError::UnableToConvertFromValue)?);
    let s = string_arg("indent", s)?;
    Ok(Value::String(format!(
        "{pad}{}",
        s.replace('\n', &format!("\n{pad}"))
    )))
}

/// sprig `nindent N S`: a newline, then `indent N S`.
fn nindent(args: &[Value]) -> Result<Value, FuncError> {
    match indent(args)? {
        Value::String(s) => Ok(Value::String(format!("\n{s}"))),
        _ => unreachable!(),
    }
}

/// Helm's `toYaml`: sigs.k8s.io/yaml's Marshal (through JSON, so map keys sorted; go-yaml v2's
/// block style, sequences not indented under their key), without the final newline.
/// Strings are quoted at least where go-yaml quotes them (sometimes more: the meaning, not the
/// quoting style, is what is reproduced); multi-line strings are refused.
fn to_yaml(args: &[Value]) -> Result<Value, FuncError> {
    let [v] = args else {
        return Err(FuncError::ExactlyXArgs("toYaml".into(), 1));
    };
    let mut out = String::new();
    yaml_block(v, &mut out).map_err(FuncError::Generic)?;
    Ok(Value::String(out.trim_end_matches('\n').to_string()))
}

fn yaml_block(v: &Value, out: &mut String) -> Result<(), String> {
    match v {
        Value::Map(m) | Value::Object(m) if !m.is_empty() => {
            let sorted: BTreeMap<_, _> = m.iter().collect();
            for (k, v) in sorted {
                out.push_str(&yaml_string(k)?);
                out.push(':');
                match v {
                    Value::Map(m) | Value::Object(m) if !m.is_empty() => {
                        out.push('\n');
                        let mut inner = String::new();
                        yaml_block(v, &mut inner)?;
                        for line in inner.lines() {
                            out.push_str("  ");
                            out.push_str(line);
                            out.push('\n');
                        }
                    }
                    Value::Array(a) if !a.is_empty() => {
                        out.push('\n');
                        yaml_block(v, out)?;
                    }
                    scalar => {
                        out.push(' ');
                        out.push_str(&yaml_scalar(scalar)?);
                        out.push('\n');
                    }
                }
            }
        }
        Value::Array(a) if !a.is_empty() => {
            for item in a {
                let mut inner = String::new();
                yaml_block(item, &mut inner)?;
                for (i, line) in inner.lines().enumerate() {
                    out.push_str(if i == 0 { "- " } else { "  " });
                    out.push_str(line);
                    out.push('\n');
                }
            }
        }
        scalar => {
            out.push_str(&yaml_scalar(scalar)?);
            out.push('\n');
        }
    }
    Ok(())
}

fn yaml_scalar(v: &Value) -> Result<String, String> {
    Ok(match v {
        Value::Map(_) | Value::Object(_) => "{}".into(),
        Value::Array(_) => "[]".into(),
        Value::NoValue | Value::Nil => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => yaml_string(s)?,
        Value::Function(_) => return Err("toYaml: a function".into()),
    })
}

/// A string as go-yaml v2 writes it: plain unless YAML 1.1 would read it as something else
/// (double-quoted then) or its characters forbid it (single-quoted then).
fn yaml_string(s: &str) -> Result<String, String> {
    if s.contains('\n') || s.chars().any(|c| !(' '..='~').contains(&c)) {
        return Err(format!(
            "toYaml: {s:?} (multi-line or non-ASCII) is not reproduced by the test renderer"
        ));
    }
    if yaml11_not_a_string(s) {
        return Ok(format!(
            "\"{}\"",
            s.replace('\\', "\\\\").replace('"', "\\\"")
        ));
    }
    let plain = !s.starts_with(|c: char| "-?:,[]{}#&*!|>'\"%@` ".contains(c))
        && !s.ends_with([' ', ':'])
        && !s.contains(": ")
        && !s.contains(" #")
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._/-=+@:(), ".contains(c));
    Ok(if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "''"))
    })
}

/// Whether go-yaml v2 (YAML 1.1) resolves this plain scalar to null, a bool or a number.
/// Errs on the side of "yes" (quoting a string more is harmless).
fn yaml11_not_a_string(s: &str) -> bool {
    const WORDS: &[&str] = &[
        "", "~", "null", "y", "yes", "n", "no", "true", "false", "on", "off", ".inf", "-.inf",
        "+.inf", ".nan",
    ];
    if WORDS.contains(&s.to_ascii_lowercase().as_str()) {
        return true;
    }
    let body = s.trim_start_matches(['-', '+']);
    body.starts_with(|c: char| c.is_ascii_digit() || c == '.')
        && body
            .chars()
            .all(|c| c.is_ascii_hexdigit() || "._:xXoO+-".contains(c))
}

/// JSON (parsed values) to a template value. Helm reads numbers as Go float64, which `{{ }}`
/// prints as %v: integers below 1e6 and plain decimals print as here; others are refused.
fn to_value(j: &Json) -> Result<Value, String> {
    Ok(match j {
        Json::Null => Value::Nil,
        Json::Bool(b) => Value::Bool(*b),
        Json::String(s) => Value::String(s.clone()),
        Json::Number(n) => {
            let f = n.as_f64().ok_or("number")?;
            if f.fract() == 0.0 && f.abs() < 1e6 {
                Value::from(f as i64)
            } else if f.fract() != 0.0 && f.abs() >= 1e-4 && f.abs() < 1e6 {
                Value::from(f)
            } else {
                return Err(format!(
                    "{n}: Go prints this float64 in exponent form; the test renderer does not"
                ));
            }
        }
        Json::Array(a) => Value::Array(a.iter().map(to_value).collect::<Result<_, _>>()?),
        Json::Object(o) => Value::Map(
            o.iter()
                .map(|(k, v)| Ok((k.clone(), to_value(v)?)))
                .collect::<Result<HashMap<_, _>, String>>()?,
        ),
    })
}

/// Helm's values coalescing: maps merge key by key, anything else replaces, null deletes.
fn merge(base: &mut Json, overrides: &Json) {
    match (base, overrides) {
        (Json::Object(b), Json::Object(o)) => {
            for (k, v) in o {
                if v.is_null() {
                    b.remove(k);
                } else if let Some(existing) = b.get_mut(k).filter(|e| e.is_object()) {
                    merge(existing, v);
                } else {
                    b.insert(k.clone(), v.clone());
                }
            }
        }
        (b, o) => *b = o.clone(),
    }
}

fn yaml_file(path: &Path) -> Json {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

/// `helm template RELEASE CHART --namespace NAMESPACE --values OVERRIDES` (CRDs not included,
/// as without --include-crds).
fn render_chart(release: &str, namespace: &str, overrides: &Json) -> Result<Rendered, String> {
    let dir = chart_dir();
    let chart = yaml_file(&dir.join("Chart.yaml"));
    let name = chart["name"].as_str().unwrap().to_string();
    let mut values = yaml_file(&dir.join("values.yaml"));
    merge(&mut values, overrides);

    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir.join("templates")).unwrap() {
        let path = entry.unwrap().path();
        let file = path.file_name().unwrap().to_str().unwrap().to_string();
        files.push((
            format!("{name}/templates/{file}"),
            std::fs::read_to_string(&path).unwrap(),
        ));
    }
    files.sort();
    FILES.with(|f| *f.borrow_mut() = files.clone());

    // .Chart carries Chart.yaml's fields capitalised, as Helm's chart.Metadata does.
    let chart_value = json!({
        "Name": chart["name"], "Version": chart["version"], "AppVersion": chart["appVersion"],
        "Description": chart["description"], "Type": chart["type"],
        "KubeVersion": chart["kubeVersion"], "APIVersion": chart["apiVersion"],
    });
    let mut rendered = Rendered {
        manifests: Vec::new(),
        notes: String::new(),
    };
    for (file, _) in &files {
        let base = file.rsplit('/').next().unwrap();
        // Partials (`_*`) only define templates; Helm renders NOTES.txt apart, at install.
        if base.starts_with('_') {
            continue;
        }
        let top = json!({
            "Values": values,
            "Chart": chart_value,
            "Release": {
                "Name": release, "Namespace": namespace, "Service": "Helm",
                "IsInstall": true, "IsUpgrade": false, "Revision": 1,
            },
            "Template": { "Name": file, "BasePath": format!("{name}/templates") },
        });
        let tmpl = template_set(file).map_err(|e| e.to_string())?;
        let out = tmpl
            .render(&Context::from(to_value(&top)?))
            .map_err(|e| format!("{file}: {e}"))?;
        // Helm would print "<no value>" as ""; here it is a reference to nothing, so a bug.
        if out.contains("<no value>") {
            return Err(format!("{file} refers to a missing value:\n{out}"));
        }
        if base == "NOTES.txt" {
            rendered.notes = out;
            continue;
        }
        for doc in split_manifests(&out) {
            rendered.manifests.push((file.clone(), doc));
        }
    }
    Ok(rendered)
}

/// Helm's releaseutil.SplitManifests: documents separated by `---` lines; empty ones dropped.
fn split_manifests(text: &str) -> Vec<String> {
    let mut docs = vec![String::new()];
    for line in text.lines() {
        if line.trim_end() == "---" {
            docs.push(String::new());
        } else {
            let doc = docs.last_mut().unwrap();
            doc.push_str(line);
            doc.push('\n');
        }
    }
    docs.into_iter()
        .map(|d| d.trim().to_string())
        .filter(|d| {
            // A document of comments only is empty for Kubernetes.
            d.lines()
                .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Checks.

const RELEASE: &str = "myset-operator";
const NAMESPACE: &str = "myset-system";

/// Labels only Helm's rendering carries.
const HELM_LABELS: [&str; 4] = [
    "helm.sh/chart",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
];

fn drop_helm_labels(v: &mut Json) {
    match v {
        Json::Object(map) => {
            for key in ["labels", "matchLabels"] {
                if let Some(Json::Object(labels)) = map.get_mut(key) {
                    for label in HELM_LABELS {
                        labels.remove(label);
                    }
                    if labels.is_empty() {
                        map.remove(key);
                    }
                }
            }
            map.values_mut().for_each(drop_helm_labels);
        }
        Json::Array(a) => a.iter_mut().for_each(drop_helm_labels),
        _ => {}
    }
}

fn key(o: &Json) -> String {
    format!(
        "{}/{} {}/{}",
        o["apiVersion"].as_str().unwrap_or("?"),
        o["kind"].as_str().unwrap_or("?"),
        o["metadata"]["namespace"].as_str().unwrap_or(""),
        o["metadata"]["name"].as_str().unwrap_or("?"),
    )
}

fn by_key(objects: Vec<Json>) -> BTreeMap<String, Json> {
    let mut map = BTreeMap::new();
    for o in objects {
        assert!(
            map.insert(key(&o), o.clone()).is_none(),
            "{} twice",
            key(&o)
        );
    }
    map
}

fn find<'a>(objects: &'a [Json], kind: &str) -> Vec<&'a Json> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

#[test]
fn the_charts_crd_is_deploy_crd() {
    let chart = std::fs::read(chart_dir().join("crds/crd.yaml")).unwrap();
    let deploy = std::fs::read(root().join("deploy/crd.yaml")).unwrap();
    assert!(
        chart == deploy,
        "deploy/helm/myset-operator/crds/crd.yaml differs from deploy/crd.yaml; run \
         `cp deploy/crd.yaml deploy/helm/myset-operator/crds/crd.yaml`"
    );
    let crds: Vec<_> = std::fs::read_dir(chart_dir().join("crds"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(crds, ["crd.yaml"], "only the MySet CRD belongs in crds/");
}

#[test]
fn default_values_render_deploy_rbac_and_operator() {
    let rendered = render_chart(RELEASE, NAMESPACE, &json!({})).unwrap();
    let mut chart = rendered.objects();
    chart.iter_mut().for_each(drop_helm_labels);

    let mut deploy = Vec::new();
    for file in ["deploy/rbac.yaml", "deploy/operator.yaml"] {
        let text = std::fs::read_to_string(root().join(file)).unwrap();
        for doc in serde_norway::Deserializer::from_str(&text) {
            let o: Json = serde::Deserialize::deserialize(doc).unwrap();
            // `helm install --create-namespace` makes the namespace; the chart does not.
            if o["kind"] != "Namespace" {
                deploy.push(o);
            }
        }
    }
    let (chart, deploy) = (by_key(chart), by_key(deploy));
    assert_eq!(
        chart.keys().collect::<Vec<_>>(),
        deploy.keys().collect::<Vec<_>>(),
        "the chart and deploy/ make different objects"
    );
    for (k, c) in &chart {
        assert!(
            c == &deploy[k],
            "{k} differs between the chart (source of truth) and deploy/; make deploy/ match:\n\
             chart:\n{}\ndeploy/:\n{}",
            serde_norway::to_string(c).unwrap(),
            serde_norway::to_string(&deploy[k]).unwrap()
        );
    }

    // Helm's standard labels on every object, and a selector that is the release's own.
    for o in rendered.objects() {
        let labels = &o["metadata"]["labels"];
        assert_eq!(
            labels["helm.sh/chart"],
            "myset-operator-0.1.0",
            "{}",
            key(&o)
        );
        assert_eq!(labels["app.kubernetes.io/managed-by"], "Helm");
        assert_eq!(labels["app.kubernetes.io/instance"], RELEASE);
        assert_eq!(labels["app.kubernetes.io/name"], "myset-operator");
        assert_eq!(labels["app.kubernetes.io/version"], "0.1.0");
    }
    let objects = rendered.objects();
    let deployment = find(&objects, "Deployment")[0];
    assert_eq!(
        deployment["spec"]["selector"]["matchLabels"],
        json!({"app.kubernetes.io/name": "myset-operator", "app.kubernetes.io/instance": RELEASE})
    );
    assert!(!rendered.notes.trim().is_empty());
    assert!(rendered.notes.contains("namespace myset-system"));
}

/// Values that change every part of the chart a user may set.
fn custom_values() -> Json {
    json!({
        "replicaCount": 3,
        "image": {"repository": "registry.example.com/myset", "tag": "0.1.0", "pullPolicy": "Always"},
        "imagePullSecrets": [{"name": "regcred"}],
        "serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/myset"}},
        "podAnnotations": {"prometheus.io/scrape": "true", "example.com/note": "a: b # c"},
        "podLabels": {"team": "data"},
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": 1, "memory": "512Mi"}},
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [
            {"key": "dedicated", "operator": "Equal", "value": "operators", "effect": "NoSchedule"},
            {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 30},
        ],
        "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
            "weight": 100,
            "podAffinityTerm": {
                "topologyKey": "kubernetes.io/hostname",
                "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "myset-operator"}},
            },
        }]}},
    })
}

#[test]
fn values_take_effect() {
    let values = custom_values();
    let rendered = render_chart("db", "operators", &values).unwrap();
    let objects = rendered.objects();
    let full = "db-myset-operator";

    let deployment = find(&objects, "Deployment")[0];
    assert_eq!(deployment["metadata"]["name"], full);
    assert_eq!(deployment["metadata"]["namespace"], "operators");
    assert_eq!(deployment["spec"]["replicas"], 3);
    let pod = &deployment["spec"]["template"];
    assert_eq!(pod["metadata"]["annotations"], values["podAnnotations"]);
    assert_eq!(pod["metadata"]["labels"]["team"], "data");
    assert_eq!(
        pod["metadata"]["labels"]["app.kubernetes.io/instance"],
        "db"
    );
    let spec = &pod["spec"];
    for field in [
        "imagePullSecrets",
        "nodeSelector",
        "tolerations",
        "affinity",
    ] {
        assert_eq!(spec[field], values[field], "{field}");
    }
    assert_eq!(spec["serviceAccountName"], full);
    let container = &spec["containers"][0];
    assert_eq!(container["image"], "registry.example.com/myset:0.1.0");
    assert_eq!(container["imagePullPolicy"], "Always");
    assert_eq!(container["resources"], values["resources"]);

    let account = find(&objects, "ServiceAccount")[0];
    assert_eq!(account["metadata"]["name"], full);
    assert_eq!(
        account["metadata"]["annotations"],
        values["serviceAccount"]["annotations"]
    );
    for binding in ["ClusterRoleBinding", "RoleBinding"] {
        let b = find(&objects, binding)[0];
        assert_eq!(
            b["subjects"],
            json!([{"kind": "ServiceAccount", "name": full, "namespace": "operators"}])
        );
    }
    assert_eq!(find(&objects, "ClusterRole")[0]["metadata"]["name"], full);
    let role = find(&objects, "Role")[0];
    assert_eq!(role["metadata"]["name"], format!("{full}-leader-election"));
    assert_eq!(role["metadata"]["namespace"], "operators");

    // An empty tag falls back to the chart's appVersion.
    let rendered = render_chart(RELEASE, NAMESPACE, &json!({"image": {"tag": ""}})).unwrap();
    let objects = rendered.objects();
    assert_eq!(
        find(&objects, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["image"],
        "myset:0.1.0"
    );
}

#[test]
fn an_existing_service_account_and_no_rbac() {
    let values = json!({
        "serviceAccount": {"create": false, "name": "existing"},
        "rbac": {"create": false},
        "fullnameOverride": "ops",
    });
    let rendered = render_chart(RELEASE, NAMESPACE, &values).unwrap();
    let objects = rendered.objects();
    let kinds: Vec<_> = objects
        .iter()
        .map(|o| o["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["Deployment"]);
    assert_eq!(objects[0]["metadata"]["name"], "ops");
    assert_eq!(
        objects[0]["spec"]["template"]["spec"]["serviceAccountName"],
        "existing"
    );
}

#[test]
fn names_fit_in_63_characters() {
    let release = "a-release-name-long-enough-that-with-the-chart-name-it-overflows";
    let rendered = render_chart(release, NAMESPACE, &json!({})).unwrap();
    let objects = rendered.objects();
    let name = find(&objects, "Deployment")[0]["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(name.len(), 63);
    assert!(format!("{release}-myset-operator").starts_with(&name));
    assert!(!name.ends_with('-'));
}

#[test]
fn the_renderer_follows_go_and_sprig() {
    let run = |text: &str, data: Json| {
        let mut t = Template::with_name("t");
        t.add_funcs(&FUNCS);
        t.add_template("t", text).unwrap();
        t.render(&Context::from(to_value(&data).unwrap())).unwrap()
    };
    assert_eq!(run(r#"{{ "x" | default "d" }}"#, json!({})), "x");
    for empty in [
        json!(""),
        json!(0),
        json!(false),
        json!([]),
        json!({}),
        json!(null),
    ] {
        assert_eq!(run(r#"{{ .v | default "d" }}"#, json!({"v": empty})), "d");
    }
    assert_eq!(run(r#"{{ .missing | default "d" }}"#, json!({})), "d");
    assert_eq!(run(r#"{{ "abcdef" | trunc 3 }}"#, json!({})), "abc");
    assert_eq!(run(r#"{{ "abcdef" | trunc -2 }}"#, json!({})), "ef");
    assert_eq!(run(r#"{{ "ab-" | trimSuffix "-" }}"#, json!({})), "ab");
    assert_eq!(run(r#"{{ "1+2" | replace "+" "_" }}"#, json!({})), "1_2");
    assert_eq!(run(r#"{{ contains "b" "abc" }}"#, json!({})), "true");
    assert_eq!(run(r#"{{ "a\"b" | quote }}"#, json!({})), r#""a\"b""#);
    assert_eq!(run(r#"{{ "a\nb" | nindent 2 }}"#, json!({})), "\n  a\n  b");
    assert_eq!(run("{{ .n }}", json!({"n": 2})), "2");
    assert!(to_value(&json!(1000000)).is_err(), "Go prints 1e+06");
    // Keys too: go-yaml v2 quotes "y" (a YAML 1.1 bool) as a key.
    let yaml = run(
        "{{ toYaml . }}",
        json!({"b": [{"y": "true", "x": 1}, "0.5", "", "a: b"], "a": {"c": {}, "d": []}}),
    );
    assert_eq!(
        yaml,
        "a:\n  c: {}\n  d: []\nb:\n- x: 1\n  \"y\": \"true\"\n- \"0.5\"\n- \"\"\n- 'a: b'"
    );
}

#[test]
fn rendered_chart_is_valid_kubernetes() {
    if !validator::available() {
        return;
    }
    let defaults = render_chart(RELEASE, NAMESPACE, &json!({})).unwrap();
    let custom = render_chart("db", "operators", &custom_values()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("chart.yaml");
    std::fs::write(&file, defaults.stream() + &custom.stream()).unwrap();

    let out = Command::new(root().join("scripts/validate-k8s"))
        .arg(&file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    // Every rendered object, for the oldest and the newest version.
    for o in defaults.objects().iter().chain(&custom.objects()) {
        let resource = format!(
            "{} passed for resource {}/{}",
            file.display(),
            o["kind"].as_str().unwrap().to_lowercase(),
            o["metadata"]["name"].as_str().unwrap()
        );
        for version in ["1.25", "1.37"] {
            let expected = format!("{resource} against version {version}");
            assert!(stdout.contains(&expected), "{expected:?} not in\n{stdout}");
        }
    }
}

/// `helm template myset-operator deploy/helm/myset-operator -n myset-system`, with the test
/// renderer: `cargo test -p myset-operator --test helm_chart -- --ignored --nocapture`.
#[test]
#[ignore = "prints the default rendering"]
fn print_default_rendering() {
    print!(
        "{}",
        render_chart(RELEASE, NAMESPACE, &json!({}))
            .unwrap()
            .stream()
    );
}
