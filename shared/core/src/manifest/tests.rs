//! Parsing and validation of model manifests.

use super::*;

const GOOD: &str = r#"
kind = "classification"
[input]
name = "input"
dtype = "float32"
layout = "nchw"
width = 224
height = 224
[preprocess]
resize = "shorter_side"
resize_to = 256
crop = "center"
mean = [127.0, 127.0, 127.0]
std = [128.0, 128.0, 128.0]
[output]
name = "logits"
softmax = true
"#;

#[test]
fn parses_and_defaults() {
    let m = ModelManifest::parse(GOOD, Path::new("m.toml")).unwrap();
    assert_eq!(m.kind, ModelKind::Classification);
    assert_eq!(m.input.color, ColorOrder::Rgb);
    assert_eq!(m.preprocess.filter, Filter::Bilinear);
    assert_eq!(m.preprocess.resize_to, Some(256));
    assert_eq!(m.output.top_k, 5);
    assert!(m.output.labels.is_none());
}

#[test]
fn rejects_zero_std_and_unknown_keys() {
    let bad = GOOD.replace("std = [128.0, 128.0, 128.0]", "std = [0.0, 1.0, 1.0]");
    let err = ModelManifest::parse(&bad, Path::new("m.toml")).unwrap_err();
    assert!(err.to_string().contains("std"), "{err}");

    let typo = GOOD.replace("softmax = true", "softmx = true");
    let err = ModelManifest::parse(&typo, Path::new("m.toml")).unwrap_err();
    assert!(err.to_string().contains("softmx"), "{err}");
}

#[test]
fn batching_defaults_off_and_is_bounded() {
    let m = ModelManifest::parse(GOOD, Path::new("m.toml")).unwrap();
    assert_eq!(m.batching, BatchingSpec::default());
    assert!(!m.batching.enabled());

    let on = format!("{GOOD}\n[batching]\nmax_batch = 4\nmax_delay_ms = 2\n");
    let m = ModelManifest::parse(&on, Path::new("m.toml")).unwrap();
    assert_eq!(m.batching.max_batch, 4);
    assert_eq!(m.batching.max_delay_ms, 2);
    assert!(m.batching.enabled());

    for bad in [
        "max_batch = 0",
        "max_batch = 65",
        "max_delay_ms = 1001",
        "size = 2",
    ] {
        let text = format!("{GOOD}\n[batching]\n{bad}\n");
        let err = ModelManifest::parse(&text, Path::new("m.toml")).unwrap_err();
        assert!(
            err.to_string().contains(bad.split(' ').next().unwrap()),
            "{bad}: {err}"
        );
    }
}

#[test]
fn rejects_crop_larger_than_resize() {
    let bad = GOOD.replace("resize_to = 256", "resize_to = 100");
    assert!(ModelManifest::parse(&bad, Path::new("m.toml")).is_err());
}

#[test]
fn person_rows_are_for_keypoint_models_only_and_bounded() {
    let pose = GOOD
        .replace("kind = \"classification\"", "kind = \"keypoints\"")
        .replace("softmax = true", "keypoints = [\"a\"]");
    let parse = |extra: &str| ModelManifest::parse(&format!("{pose}{extra}"), Path::new("m.toml"));
    let m = parse("persons = 6\nbox = \"yxyx_score\"\nperson_score_threshold = 0.3\n").unwrap();
    assert_eq!(m.output.persons, Some(6));
    assert_eq!(m.output.person_box, Some(PersonBox::YxyxScore));
    assert!(parse("persons = 0\n").is_err());
    assert!(parse(&format!("persons = {}\n", MAX_PERSONS + 1)).is_err());
    assert!(
        parse("box = \"yxyx_score\"\n").is_err(),
        "a box needs person rows"
    );
    assert!(parse("persons = 2\nbox = \"diagonal\"\n").is_err());
    let classifier = format!("{GOOD}persons = 2\n");
    assert!(ModelManifest::parse(&classifier, Path::new("m.toml")).is_err());
}

#[test]
fn size_multiple_must_divide_the_input() {
    let with = |k: u32| {
        GOOD.replace(
            "height = 224",
            &format!("height = 224\nsize_multiple = {k}"),
        )
    };
    assert!(ModelManifest::parse(&with(32), Path::new("m.toml")).is_ok());
    assert!(ModelManifest::parse(&with(0), Path::new("m.toml")).is_err());
    assert!(ModelManifest::parse(&with(48), Path::new("m.toml")).is_err());
}

#[test]
fn runtime_section_parses_and_checks_provider_names() {
    let m = ModelManifest::parse(GOOD, Path::new("m.toml")).unwrap();
    assert_eq!(m.runtime, RuntimeSpec::default());
    let with = format!("{GOOD}\n[runtime]\nproviders = [\"openvino\", \"cpu\"]\nfallback = true\n");
    let m = ModelManifest::parse(&with, Path::new("m.toml")).unwrap();
    assert_eq!(
        m.runtime.providers,
        Some(vec![Provider::Openvino, Provider::Cpu])
    );
    assert!(m.runtime.fallback);
    let unknown = format!("{GOOD}\n[runtime]\nproviders = [\"rocm\"]\n");
    let err = ModelManifest::parse(&unknown, Path::new("m.toml")).unwrap_err();
    assert!(err.to_string().contains("rocm"), "{err}");
    let empty = format!("{GOOD}\n[runtime]\nproviders = []\n");
    let err = ModelManifest::parse(&empty, Path::new("m.toml")).unwrap_err();
    assert!(err.to_string().contains("at least one"), "{err}");
}
