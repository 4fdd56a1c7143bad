//! Every file under tests/scenarios/bad is refused with exit code 2 and the messages its
//! `# expect:` lines give (file:line:column: field ...), and nothing leaks (`# absent:`).

use std::path::Path;

use crate::helpers::{Scratch, output, warren};

#[test]
fn each_bad_scenario_names_line_and_field_and_exits_2() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios/bad");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(
        files.len() >= 12,
        "at least 12 bad scenarios, found {}",
        files.len()
    );
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let mut command = warren();
        command.current_dir(&dir).args(["validate", &name]);
        let (code, _, stderr) = output(command);
        assert_eq!(code, 2, "{name}: exit code, stderr:\n{stderr}");
        let expectations: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# expect: "))
            .collect();
        assert!(!expectations.is_empty(), "{name} has no # expect: line");
        for expected in expectations {
            let full = format!("{name}:{expected}");
            assert!(
                stderr.contains(&full),
                "{name}: expected {full:?} in:\n{stderr}"
            );
        }
        for absent in text.lines().filter_map(|l| l.strip_prefix("# absent: ")) {
            assert!(
                !stderr.contains(absent),
                "{name}: {absent:?} must not appear in:\n{stderr}"
            );
        }
    }
}

#[test]
fn validate_checks_every_file_and_reports_each_one() {
    let good = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/quickstart.toml");
    let bad = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios/bad/negative-rate.toml");
    let mut command = warren();
    command.arg("validate").arg(&good).arg(&bad);
    let (code, stdout, stderr) = output(command);
    assert_eq!(code, 2);
    assert!(stdout.contains("quickstart.toml: ok"), "{stdout}");
    assert!(
        stderr.contains("negative-rate.toml:5:8: publishers.rate = -5"),
        "{stderr}"
    );
    assert!(
        stderr.contains("1 of 2 scenario files have problems"),
        "{stderr}"
    );
}

#[test]
fn every_shipped_scenario_is_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut command = warren();
    command.arg("validate");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            command.arg(path);
        }
    }
    let (code, stdout, stderr) = output(command);
    assert_eq!(code, 0, "{stdout}{stderr}");
}

#[test]
fn a_bad_scenario_touches_nothing() {
    let scratch = Scratch::new("bad-run");
    let scenario = scratch.file(
        "bad.toml",
        "name = \"bad\"\nduration = \"5s\"\n[publishers]\nrate = -1\n",
    );
    let out = scratch.path.join("out");
    let command = scratch.warren_run(&scenario, &out);
    let (code, _, stderr) = output(command);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("bad.toml:4:8: publishers.rate = -1"),
        "{stderr}"
    );
    assert!(!out.exists(), "no output folder for a refused scenario");
    scratch.assert_clean();
}

#[test]
fn a_missing_file_is_bad_input() {
    let mut command = warren();
    command.args(["run", "does/not/exist.toml"]);
    let (code, _, stderr) = output(command);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("does/not/exist.toml: cannot read the scenario file"),
        "{stderr}"
    );
}
