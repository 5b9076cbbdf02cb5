//! The command line as an operator uses it.

mod common;

use common::{Env, need, repo};

#[test]
fn version_and_help_on_every_subcommand() {
    let env = Env::new("");
    assert!(env.ok(&["--version"]).starts_with("kanki "));
    for sub in [
        vec!["serve"],
        vec!["import"],
        vec!["export"],
        vec!["config"],
        vec!["config", "check"],
        vec!["indicators"],
        vec!["indicators", "list"],
        vec!["allowlist", "add"],
        vec!["hosts", "mark"],
        vec!["lookup"],
        vec!["bench"],
    ] {
        let mut args = sub.clone();
        args.push("--help");
        let out = env.ok(&args);
        assert!(out.contains("Usage: kanki"), "{sub:?}: {out}");
    }
}

#[test]
fn the_default_configuration_checks_and_errors_name_key_and_line() {
    let env = Env::new("");
    let default = env.ok(&["config", "default"]);
    let path = env.dir.path().join("default.toml");
    std::fs::write(&path, &default).unwrap();
    assert!(
        env.ok(&["config", "check", path.to_str().unwrap()])
            .contains(": ok")
    );

    let bad = env.dir.path().join("bad.toml");
    std::fs::write(&bad, "data_dir = \"x\"\n\n[[feeds]]\nname = \"urlhaus\"\nformat = \"urlhaus\"\npath = \"/x\"\nevery = \"sometimes\"\n").unwrap();
    let out = env.run(&["config", "check", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml:7"), "{err}");
    assert!(err.contains("feeds[0].every"), "{err}");

    // Every subcommand reads the same file: a broken one stops them all.
    let out = common::kanki_bin();
    let out = std::process::Command::new(out)
        .args(["--config", bad.to_str().unwrap(), "indicators", "list"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn the_issue_example_configuration_works_as_written() {
    let env = Env::new("");
    let cfg = env.dir.path().join("example.toml");
    std::fs::write(
        &cfg,
        "data_dir = \"./kanki-data\"\n\n[api]\nlisten = \"127.0.0.1:8080\"\n\n[[feeds]]\nname = \"urlhaus\"\nformat = \"urlhaus\"\npath = \"/var/lib/feeds/urlhaus.csv\"   # or url = \"https://...\"\nevery = \"5m\"\n",
    )
    .unwrap();
    assert!(
        env.ok(&["config", "check", cfg.to_str().unwrap()])
            .contains("1 feed")
    );
}

#[test]
fn import_twice_changes_nothing_the_second_time_and_says_so() {
    let env = Env::new("");
    let feed = repo().join("examples/feeds/urlhaus.csv");
    let first = env.ok(&[
        "import",
        "--format",
        "urlhaus",
        "--json",
        feed.to_str().unwrap(),
    ]);
    let first: serde_json::Value = serde_json::from_str(&first).unwrap();
    assert!(first["added"].as_u64().unwrap() > 10);
    assert!(first["skipped"].as_u64().unwrap() >= 1);
    let reasons = first["skipped_by_reason"].as_object().unwrap();
    assert!(
        reasons
            .values()
            .all(|g| !g["first_lines"].as_array().unwrap().is_empty())
    );
    let export_before = env.ok(&["export", "--format", "json"]);

    let second = env.ok(&["import", "--format", "urlhaus", feed.to_str().unwrap()]);
    assert!(second.contains("nothing changed"), "{second}");
    assert!(second.contains("added               0"), "{second}");
    assert_eq!(
        env.ok(&["export", "--format", "json"]).len(),
        export_before.len()
    );
}

#[test]
fn gzip_and_zip_inputs_are_unpacked() {
    let env = Env::new("");
    let plain = repo().join("examples/feeds/plain.txt");
    let gz = env.dir.path().join("plain.txt.gz");
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("gzip -c {} > {}", plain.display(), gz.display()))
        .status()
        .unwrap();
    assert!(status.success());
    let out = env.ok(&["import", "-f", "plain", "--json", gz.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(v["added"].as_u64().unwrap() > 0, "{out}");
    // The same rows from stdin are already there.
    let out = env
        .cmd(&["import", "-f", "plain", "--json", "-"])
        .stdin(std::fs::File::open(&plain).unwrap())
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["added"], 0);
}

#[test]
fn the_allowlist_wins_and_lookup_says_why() {
    let env = Env::new("[allowlist]\nsuffix = [\"isp.example\"]\n");
    let list = env.dir.path().join("list.txt");
    std::fs::write(
        &list,
        "bad.example\nportal.isp.example\nhttp://cdn.bad.example/x.exe\n",
    )
    .unwrap();
    env.ok(&["import", "-f", "plain", list.to_str().unwrap()]);
    let out = env.ok(&["lookup", "a.b.bad.example"]);
    assert!(out.contains("listed through bad.example"), "{out}");
    let out = env.ok(&["lookup", "portal.isp.example"]);
    assert!(out.contains("allowed by isp.example"), "{out}");
    let show = env.ok(&["indicators", "show", "portal.isp.example"]);
    assert!(
        show.contains("allowlisted") && show.contains("isp.example"),
        "{show}"
    );

    env.ok(&[
        "allowlist",
        "add",
        "cdn.bad.example",
        "--reason",
        "our CDN, checked",
    ]);
    let out = env.ok(&["lookup", "cdn.bad.example"]);
    assert!(
        out.contains("allowed by cdn.bad.example")
            && out.contains("overriding the listing of bad.example"),
        "{out}"
    );
    let out = env.run(&["lookup", "good.example"]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn bind_accepts_the_rpz_export() {
    let checkzone = need("named-checkzone", "bind9-utils");
    let env = Env::new(
        "[export.rpz]\norigin = \"rpz.isp.example\"\naction = \"cname:*.garden.isp.example.\"\n",
    );
    for (format, file) in [
        ("urlhaus", "urlhaus.csv"),
        ("threatfox", "threatfox.csv"),
        ("rpz", "rpz.zone"),
        ("hosts", "hosts.txt"),
    ] {
        let path = repo().join("examples/feeds").join(file);
        env.ok(&["import", "-f", format, path.to_str().unwrap()]);
    }
    env.ok(&[
        "allowlist",
        "add",
        "www.malware-drop.example",
        "--reason",
        "test exception",
    ]);
    let zone = env.dir.path().join("export.rpz");
    env.ok(&["export", "-f", "rpz", "-o", zone.to_str().unwrap()]);
    let text = std::fs::read_to_string(&zone).unwrap();
    assert!(text.contains("rpz-ip"), "IP triggers expected:\n{text}");
    assert!(text.contains("CNAME *.garden.isp.example."), "{text}");
    let out = std::process::Command::new(checkzone)
        .args(["-i", "local", "rpz.isp.example", zone.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "named-checkzone refused the export:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        text
    );
}

#[test]
fn every_export_format_writes() {
    let env = Env::new("");
    let path = repo().join("examples/feeds/urlhaus.csv");
    env.ok(&["import", "-f", "urlhaus", path.to_str().unwrap()]);
    for f in ["rpz", "hosts", "plain", "csv", "json", "squid", "unbound"] {
        let out = env.ok(&["export", "-f", f]);
        assert!(out.contains("cdn.update-center.example"), "{f}: {out}");
    }
    let csv = env.ok(&["export", "-f", "csv", "--kind", "url"]);
    assert!(
        csv.lines().next().unwrap().starts_with("id,kind,value"),
        "{csv}"
    );
}

#[test]
fn operator_actions_from_the_command_line() {
    let env = Env::new("");
    let out = env.ok(&[
        "indicators",
        "add",
        "http://Evil.Example:80/a/../payload.exe",
        "--tag",
        "emotet",
    ]);
    assert!(out.contains("http://evil.example/payload.exe"), "{out}");
    assert!(env.ok(&["lookup", "evil.example"]).contains("listed"));
    env.ok(&[
        "indicators",
        "false-positive",
        "http://evil.example/payload.exe",
        "--reason",
        "vendor update server",
    ]);
    assert!(env.run(&["lookup", "evil.example"]).status.code() == Some(1));
    let list = env.ok(&["indicators", "list", "--status", "false-positive"]);
    assert!(list.contains("evil.example"), "{list}");
    env.ok(&[
        "hosts",
        "mark",
        "shop.example",
        "--reason",
        "a real shop with an injected script",
    ]);
    env.ok(&["indicators", "add", "http://shop.example/wp-content/x.js"]);
    assert_eq!(env.run(&["lookup", "shop.example"]).status.code(), Some(1));
}
