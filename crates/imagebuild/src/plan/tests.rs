//! Table tests of parse and resolve: each case is a template (and inputs) and the text it must give.

use expect_test::{Expect, expect};
use serde_json::json;

use super::*;
use crate::template::parse;

/// Parses `json`; prints the error, or a one-line-per-fact summary of the resolved plan.
fn check(json: &str, vars: &[(&str, &str)], var_files: &[serde_json::Value], expect: Expect) {
    expect.assert_eq(&run_case(json, vars, var_files));
}

fn run_case(json: &str, vars: &[(&str, &str)], var_files: &[serde_json::Value]) -> String {
    let t = match parse(json) {
        Ok(t) => t,
        Err(e) => return format!("parse error: {e}\n"),
    };
    let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let var_files: Vec<(String, serde_json::Value)> =
        var_files.iter().enumerate().map(|(i, v)| (format!("vars{}.json", i + 1), v.clone())).collect();
    let env = |name: &str| (name == "HOME").then(|| "/home/test".to_string());
    let inputs = ResolveInputs { vars: &vars, var_files: &var_files, env: &env, timestamp: 1_700_000_000 };
    match resolve_with(&t, &inputs) {
        Ok(p) => summarize(&p),
        Err(e) => format!("resolve error: {e}\n"),
    }
}

fn summarize(p: &Plan) -> String {
    let mut s = format!("build {} from {:?}\n", p.build_name, p.source);
    if let Some(m) = &p.outputs.managed_image {
        s += &format!("managed image {:?} in {:?}\n", m.name, m.resource_group);
    }
    if let Some(g) = &p.outputs.gallery {
        s += &format!("gallery {}/{}/{}/{}\n", g.resource_group, g.gallery_name, g.image_name, g.image_version);
    }
    if let Some(e) = &p.entrypoint {
        s += &format!("entrypoint {e:?}\n");
    }
    for (i, step) in p.steps.iter().enumerate() {
        s += &format!("step {} {} ({})", i + 1, step.kind(), step.template_path);
        if let Some(n) = &step.name {
            s += &format!(" name={n:?}");
        }
        if let Some(d) = step.pause_before {
            s += &format!(" pause_before={d:?}");
        }
        if step.max_retries > 0 {
            s += &format!(" max_retries={}", step.max_retries);
        }
        if let Some(d) = step.timeout {
            s += &format!(" timeout={d:?}");
        }
        s += "\n";
        match &step.action {
            Action::Shell(sh) => {
                for script in &sh.scripts {
                    s += &format!("  {script:?}\n");
                }
                if !sh.env.is_empty() {
                    s += &format!("  env {:?}\n", sh.env);
                }
                let cmd: String = sh
                    .execute_command
                    .iter()
                    .map(|p| match p {
                        ExecPiece::Lit(l) => l.clone(),
                        ExecPiece::Path => "<PATH>".into(),
                        ExecPiece::Vars => "<VARS>".into(),
                    })
                    .collect();
                s += &format!("  execute_command {cmd:?}\n");
                if sh.valid_exit_codes != [0] {
                    s += &format!("  valid_exit_codes {:?}\n", sh.valid_exit_codes);
                }
            }
            Action::File(f) => {
                for src in &f.sources {
                    s += &format!("  {src:?}\n");
                }
                s += &format!("  => {:?}\n", f.destination);
            }
        }
    }
    if !p.sensitive.is_empty() {
        s += &format!("sensitive {:?}\n", p.sensitive);
    }
    s
}

/// A minimal valid template around `provisioners` (and extra builder keys).
fn tpl(builder_extra: &str, provisioners: &str) -> String {
    format!(
        r#"{{"variables": {{"title": "v2", "secret": null}},
            "sensitive-variables": ["secret"],
            "builders": [{{"type": "galleon", "managed_image_name": "img"{builder_extra}}}],
            "provisioners": {provisioners}}}"#
    )
}

#[test]
fn seed_003_shape_resolves() {
    check(
        r#"{
          "variables": {"title": null, "rg": "rg"},
          "builders": [{"type": "galleon", "source_dir": "/srv/v1",
                        "shared_image_gallery_destination": {"resource_group": "{{user `rg`}}", "gallery_name": "g",
                                                             "image_name": "web", "image_version": "2.0.0"}}],
          "provisioners": [
            {"type": "shell", "inline": ["sed -i -e 's/Welcome v1/{{user `title`}}/' index.html"]},
            {"type": "file", "source": "/srv/extra.txt", "destination": "extra.txt"}
          ]
        }"#,
        &[("title", "Welcome v2")],
        &[],
        expect![[r#"
            build galleon from Dir("/srv/v1")
            gallery rg/g/web/2.0.0
            step 1 shell (provisioners[0])
              Inline { shebang: "/bin/sh -e", lines: ["sed -i -e 's/Welcome v1/Welcome v2/' index.html"] }
              execute_command "chmod +x <PATH>; <VARS> <PATH>"
            step 2 file (provisioners[1])
              Path { path: "/srv/extra.txt", contents_only: false }
              => Destination { path: "extra.txt", is_dir: false }
        "#]],
    );
}

#[test]
fn packer_seed_template_with_azure_builder_is_refused_by_type() {
    check(
        r#"{"variables": {"client_id": null},
            "builders": [{"type": "azure-arm", "client_id": "{{user `client_id`}}", "vm_size": "x"}],
            "provisioners": [{"type": "shell", "inline": ["apt-get update"], "inline_shebang": "/bin/sh -x",
                              "execute_command": "chmod +x {{ .Path }}; {{ .Vars }} sudo -E sh '{{ .Path }}'"}]}"#,
        &[],
        &[],
        expect![[r#"
            parse error: builders[0].type: unknown builder type "azure-arm" (galleon builds with "type": "galleon")
        "#]],
    );
}

#[test]
fn json_and_top_level_errors() {
    let cases = [
        ("not json", "{\"builders\": [}"),
        ("array", "[]"),
        ("unknown top key", r#"{"builders": [{"type": "galleon", "managed_image_name": "i"}], "provisoners": []}"#),
        ("comment keys are fine", r#"{"_comment": "x", "builders": [{"type": "galleon", "managed_image_name": "i"}]}"#),
        ("post-processors", r#"{"builders": [{"type": "galleon", "managed_image_name": "i"}], "post-processors": []}"#),
        ("no builders key", r#"{"provisioners": []}"#),
        ("zero builders", r#"{"builders": []}"#),
        ("two builders", r#"{"builders": [{"type": "galleon"}, {"type": "galleon"}]}"#),
        ("builders not a list", r#"{"builders": {"type": "galleon"}}"#),
        ("builder without type", r#"{"builders": [{"managed_image_name": "i"}]}"#),
        (
            "variables not an object",
            r#"{"variables": [], "builders": [{"type": "galleon", "managed_image_name": "i"}]}"#,
        ),
        (
            "variable default list",
            r#"{"variables": {"x": [1]}, "builders": [{"type": "galleon", "managed_image_name": "i"}]}"#,
        ),
        (
            "sensitive undeclared",
            r#"{"sensitive-variables": ["pw"], "builders": [{"type": "galleon", "managed_image_name": "i"}]}"#,
        ),
    ];
    let out: String = cases.iter().map(|(name, json)| format!("# {name}\n{}", run_case(json, &[], &[]))).collect();
    expect![[r#"
        # not json
        parse error: template is not valid JSON: expected value at line 1 column 15
        # array
        parse error: the template must be a JSON object, not a list
        # unknown top key
        parse error: provisoners: unknown key (did you mean "provisioners"?)
        # comment keys are fine
        build galleon from None
        managed image "i" in None
        # post-processors
        parse error: post-processors: not supported by galleon: galleon has no post-processors; the builder's outputs publish the image
        # no builders key
        parse error: builders: required: one builder with "type": "galleon"
        # zero builders
        parse error: builders: needs one builder with "type": "galleon"; found none
        # two builders
        parse error: builders: galleon builds with exactly one builder; found 2
        # builders not a list
        parse error: builders: must be a list with one builder
        # builder without type
        parse error: builders[0]: missing "type" (galleon builds with "type": "galleon")
        # variables not an object
        parse error: variables: must be an object of variable names to default values (null = required)
        # variable default list
        parse error: variables.x: a default must be a string, number, boolean or null (required)
        # sensitive undeclared
        parse error: sensitive-variables[0]: "pw" is not declared in variables
    "#]]
    .assert_eq(&out);
}

#[test]
fn builder_errors() {
    let b = |extra: &str| format!(r#"{{"builders": [{{"type": "galleon"{extra}}}]}}"#);
    let cases = [
        ("no output", b("")),
        ("two sources", b(r#", "source_dir": "/a", "source_image_version": "g/d/1.0.0", "managed_image_name": "i""#)),
        (
            "rg without name",
            b(
                r#", "managed_image_resource_group_name": "rg", "shared_image_gallery_destination": {"resource_group": "rg", "gallery_name": "g", "image_name": "i", "image_version": "1.0.0"}"#,
            ),
        ),
        (
            "gallery missing fields and extra",
            b(
                r#", "shared_image_gallery_destination": {"gallery_name": "g", "replication_regions": ["x"], "imag_name": "i"}"#,
            ),
        ),
        ("azure key and typo", b(r#", "managed_image_name": "i", "client_id": "x", "entrypont": "start""#)),
        ("wrong type", b(r#", "managed_image_name": 5"#)),
        (
            "all sources kinds ok",
            b(
                r#", "source_image": "base", "managed_image_name": "i", "managed_image_resource_group_name": "rg", "entrypoint": "start", "name": "web""#,
            ),
        ),
    ];
    let out: String = cases.iter().map(|(name, json)| format!("# {name}\n{}", run_case(json, &[], &[]))).collect();
    expect![[r#"
        # no output
        parse error: builders[0]: no output: set managed_image_name and/or shared_image_gallery_destination
        # two sources
        parse error: builders[0]: source_dir and source_image_version are exclusive: give one source, or none to start from an empty root
        # rg without name
        parse error: builders[0].managed_image_resource_group_name: needs managed_image_name (it names the managed image's resource group)
        # gallery missing fields and extra
        parse error: template has 5 problems:
          builders[0].shared_image_gallery_destination: missing "resource_group"
          builders[0].shared_image_gallery_destination: missing "image_name"
          builders[0].shared_image_gallery_destination: missing "image_version"
          builders[0].shared_image_gallery_destination.replication_regions: not supported by galleon: galleon has one region
          builders[0].shared_image_gallery_destination.imag_name: unknown key (did you mean "image_name"?)
        # azure key and typo
        parse error: template has 2 problems:
          builders[0].client_id: not supported by galleon: an azure-arm setting the galleon builder does not use
          builders[0].entrypont: unknown key (did you mean "entrypoint"?)
        # wrong type
        parse error: template has 2 problems:
          builders[0].managed_image_name: must be a string, not a number
          builders[0]: no output: set managed_image_name and/or shared_image_gallery_destination
        # all sources kinds ok
        build web from ManagedImage("base")
        managed image "i" in Some("rg")
        entrypoint "start"
    "#]]
    .assert_eq(&out);
}

#[test]
fn provisioner_errors() {
    let cases = [
        ("unknown type", r#"[{"type": "ansible", "playbook_file": "x"}]"#),
        ("no type", r#"[{"inline": ["x"]}]"#),
        ("typo in key", r#"[{"type": "shell", "inline": ["a"]}, {"type": "shell", "inlin": ["b"]}]"#),
        ("inline and script", r#"[{"type": "shell", "inline": ["a"], "script": "x.sh"}]"#),
        ("empty inline", r#"[{"type": "shell", "inline": []}]"#),
        ("inline not a list", r#"[{"type": "shell", "inline": "echo hi"}]"#),
        ("environment_vars not strings", r#"[{"type": "shell", "inline": ["a"], "environment_vars": [1]}]"#),
        (
            "unsupported shell keys",
            r#"[{"type": "shell", "inline": ["a"], "remote_folder": "/x", "expect_disconnect": true, "override": {}}]"#,
        ),
        ("file without destination", r#"[{"type": "file", "source": "a"}]"#),
        ("file source and content", r#"[{"type": "file", "source": "a", "content": "b", "destination": "c"}]"#),
        ("file download", r#"[{"type": "file", "source": "a", "destination": "c", "direction": "download"}]"#),
        ("undeclared user var", r#"[{"type": "shell", "inline": ["echo {{user `titel`}}"]}]"#),
        ("env outside defaults", r#"[{"type": "shell", "inline": ["echo {{env `HOME`}}"]}]"#),
        ("Path outside execute_command", r#"[{"type": "shell", "inline": ["echo {{.Path}}"]}]"#),
        ("unknown function", r#"[{"type": "shell", "inline": ["echo {{isotime}}"]}]"#),
        ("only unknown builder", r#"[{"type": "shell", "inline": ["a"], "only": ["azure-arm"]}]"#),
        (
            "bad duration and retries",
            r#"[{"type": "shell", "inline": ["a"], "pause_before": "5 minutes", "max_retries": -1, "timeout": "1d"}]"#,
        ),
        ("not an object", r#"["shell"]"#),
    ];
    let out: String =
        cases.iter().map(|(name, p)| format!("# {name}\n{}", run_case(&tpl("", p), &[("secret", "s")], &[]))).collect();
    expect![[r#"
        # unknown type
        parse error: provisioners[0].type: unknown provisioner type "ansible" (galleon runs "shell" and "file")
        # no type
        parse error: provisioners[0]: missing "type" (galleon runs "shell" and "file" provisioners)
        # typo in key
        parse error: template has 2 problems:
          provisioners[1]: a shell provisioner needs one of inline, script or scripts
          provisioners[1].inlin: unknown key (did you mean "inline"?)
        # inline and script
        parse error: provisioners[0]: inline and script are exclusive: give only one
        # empty inline
        parse error: provisioners[0].inline: must not be empty
        # inline not a list
        parse error: provisioners[0].inline: must be a list of strings, not a string
        # environment_vars not strings
        parse error: provisioners[0].environment_vars[0]: must be a string, not a number
        # unsupported shell keys
        parse error: template has 3 problems:
          provisioners[0].remote_folder: not supported by galleon: scripts always go to the sandbox's private /tmp
          provisioners[0].expect_disconnect: not supported by galleon: galleon provisioners run on this machine and cannot reboot it
          provisioners[0].override: not supported by galleon: a galleon template has one builder, so there is nothing to override per builder
        # file without destination
        parse error: provisioners[0]: missing "destination" (a path in the image root)
        # file source and content
        parse error: provisioners[0]: source and content are exclusive: give only one
        # file download
        parse error: provisioners[0].direction: download is not supported: a build only writes into the image root
        # undeclared user var
        parse error: provisioners[0].inline[0]: {{user `titel`}}: variable "titel" is not declared in variables
        # env outside defaults
        parse error: provisioners[0].inline[0]: {{env `HOME`}}: {{env}} is only allowed in variable defaults (as in Packer)
        # Path outside execute_command
        parse error: provisioners[0].inline[0]: {{.Path}}: .Path is only available in execute_command
        # unknown function
        parse error: provisioners[0].inline[0]: {{isotime}}: unknown function "isotime" (galleon supports user, env (in variable defaults), timestamp, build_name, build_type)
        # only unknown builder
        parse error: provisioners[0].only[0]: no builder named "azure-arm" (this template's builder is "galleon")
        # bad duration and retries
        parse error: template has 3 problems:
          provisioners[0].pause_before: "5 minutes" is not a duration (use Go's form, e.g. 30s, 5m, 1h30m, 500ms)
          provisioners[0].max_retries: must be a non-negative whole number, not -1
          provisioners[0].timeout: "1d" is not a duration (use Go's form, e.g. 30s, 5m, 1h30m, 500ms)
        # not an object
        parse error: provisioners[0]: provisioners[0] must be a JSON object, not a string
    "#]]
    .assert_eq(&out);
}

#[test]
fn variables_precedence_and_errors() {
    let t = r#"{"variables": {"a": "default-a", "b": "default-b", "c": "default-c", "home": "{{env `HOME`}}/x",
                              "nothome": "[{{env `NOPE`}}]", "n": 5, "req1": null, "req2": null},
                "builders": [{"type": "galleon", "managed_image_name": "{{user `a`}}-{{user `b`}}-{{user `c`}}",
                              "entrypoint": "{{user `home`}} {{user `nothome`}} {{user `n`}} {{timestamp}} {{user `req1`}} {{user `req2`}}"}]}"#;
    let files = [json!({"b": "file1-b", "c": "file1-c"}), json!({"c": "file2-c", "req2": true})];
    let out = [
        run_case(t, &[("req1", "r1"), ("a", "cli-a")], &files),
        run_case(t, &[("a", "x"), ("a", "last wins")], &[json!({"req1": 1, "req2": 2})]),
        run_case(t, &[], &[]),
        run_case(t, &[("req1", "x"), ("zzz", "1")], &[json!({"yyy": "1", "req2": "2"})]),
        run_case(t, &[], &[json!(["not", "an object"])]),
        run_case(t, &[], &[json!({"req1": {"nested": 1}})]),
    ]
    .concat();
    expect![[r#"
        build galleon from None
        managed image "cli-a-file1-b-file2-c" in None
        entrypoint "/home/test/x [] 5 1700000000 r1 true"
        build galleon from None
        managed image "last wins-default-b-default-c" in None
        entrypoint "/home/test/x [] 5 1700000000 1 2"
        resolve error: required variables not set: req1, req2 (set with -var NAME=VALUE or a -var-file)
        resolve error: variables not declared in the template: yyy (from var-file vars1.json), zzz (from -var)
        resolve error: var-file vars1.json: must be a JSON object of variable names to values
        resolve error: var-file vars1.json: req1: must be a string, number or boolean
    "#]]
    .assert_eq(&out);
}

#[test]
fn shell_values_defaults_and_filters() {
    let p = r#"[
        {"type": "shell", "name": "setup", "scripts": ["a.sh", "/abs/b.sh"], "environment_vars": ["A=1", "B=it's {{user `title`}}", "C=x=y"],
         "env": {"D": "{{build_name}}"}, "execute_command": "{{.Vars}} /bin/sh -x {{.Path}} {{user `title`}}",
         "valid_exit_codes": [0, 2], "pause_before": "1s", "max_retries": "2", "timeout": "5m"},
        {"type": "shell", "script": "only.sh", "only": ["galleon"]},
        {"type": "shell", "script": "skipped.sh", "except": ["galleon"]},
        {"type": "shell", "inline": ["false", "echo {{user `secret`}}"], "inline_shebang": "/bin/bash -eux"},
        {"type": "file", "sources": ["/a/dir/", "/b/file"], "destination": "/opt/app/"},
        {"type": "file", "content": "hello {{user `title`}}", "destination": "./etc/motd"},
        {"type": "file", "source": "x", "destination": "/"}
    ]"#;
    expect![[r#"
        build galleon from None
        managed image "img" in None
        step 1 shell (provisioners[0]) name="setup" pause_before=1s max_retries=2 timeout=300s
          File("a.sh")
          File("/abs/b.sh")
          env [("A", "1"), ("B", "it's v2"), ("C", "x=y"), ("D", "galleon")]
          execute_command "<VARS> /bin/sh -x <PATH> v2"
          valid_exit_codes [0, 2]
        step 2 shell (provisioners[1])
          File("only.sh")
          execute_command "chmod +x <PATH>; <VARS> <PATH>"
        step 3 shell (provisioners[3])
          Inline { shebang: "/bin/bash -eux", lines: ["false", "echo hunter2"] }
          execute_command "chmod +x <PATH>; <VARS> <PATH>"
        step 4 file (provisioners[4])
          Path { path: "/a/dir/", contents_only: true }
          Path { path: "/b/file", contents_only: false }
          => Destination { path: "opt/app", is_dir: true }
        step 5 file (provisioners[5])
          Content("hello v2")
          => Destination { path: "etc/motd", is_dir: false }
        step 6 file (provisioners[6])
          Path { path: "x", contents_only: false }
          => Destination { path: "", is_dir: true }
        sensitive ["hunter2"]
    "#]]
    .assert_eq(&run_case(&tpl("", p), &[("secret", "hunter2")], &[]));
}

#[test]
fn value_errors_after_substitution_are_masked() {
    let p = r#"[
        {"type": "shell", "inline": ["a"], "environment_vars": ["NOEQUALS", "1BAD=x", "OK={{user `secret`}}"], "inline_shebang": ""},
        {"type": "file", "source": "x", "destination": "../etc/passwd"},
        {"type": "file", "source": "x", "destination": "a/../../b"},
        {"type": "file", "sources": ["x", "y"], "destination": "file"},
        {"type": "file", "content": "x", "destination": "dir/"},
        {"type": "file", "source": "", "destination": "d"}
    ]"#;
    let gallery = r#", "shared_image_gallery_destination": {"resource_group": "rg", "gallery_name": "g", "image_name": "i", "image_version": "{{user `secret`}}"}, "source_image_version": "g/i""#;
    expect![[r#"
        resolve error: template has 10 problems:
          builders[0].source_image_version: "g/i" is neither a gallery image version id nor GALLERY/IMAGE/VERSION
          builders[0].shared_image_gallery_destination.image_version: '<sensitive>' is not a valid image version: it must have exactly three parts (expected MAJOR.MINOR.PATCH, e.g. 1.0.0)
          provisioners[0].inline_shebang: must not be empty
          provisioners[0].environment_vars[0]: must be KEY=VALUE
          provisioners[0].environment_vars[1]: "1BAD" is not a valid environment variable name
          provisioners[1].destination: "../etc/passwd" leaves the image root ('..' is not allowed in a destination)
          provisioners[2].destination: "a/../../b" leaves the image root ('..' is not allowed in a destination)
          provisioners[3].destination: with several sources the destination must be a directory (end it with /)
          provisioners[4].destination: with content the destination must be a file path, not a directory
          provisioners[5].source: must not be empty
    "#]]
    .assert_eq(&run_case(&tpl(gallery, p), &[("secret", "not.a-version")], &[]));
}

#[test]
fn make_paths_absolute_uses_the_base() {
    let json = tpl(
        r#", "source_dir": "app""#,
        r#"[{"type": "shell", "script": "s.sh"}, {"type": "file", "source": "files/", "destination": "x/"}]"#,
    );
    let t = parse(&json).expect("parses");
    let env = |_: &str| None;
    let vars = [("secret".to_string(), "s".to_string())];
    let mut plan =
        resolve_with(&t, &ResolveInputs { vars: &vars, var_files: &[], env: &env, timestamp: 0 }).expect("resolves");
    plan.make_paths_absolute(Path::new("/work/dir"));
    assert_eq!(plan.source, Source::Dir("/work/dir/app".into()));
    let Action::Shell(s) = &plan.steps[0].action else { panic!("shell") };
    assert_eq!(s.scripts, [Script::File("/work/dir/s.sh".into())]);
    let Action::File(f) = &plan.steps[1].action else { panic!("file") };
    assert_eq!(f.sources, [FileSource::Path { path: "/work/dir/files/".into(), contents_only: true }]);
    let p2 = plan.clone();
    plan.make_paths_absolute(Path::new("/elsewhere"));
    assert_eq!(plan, p2, "absolute paths stay as they are");
}

#[test]
fn vars_flatten_as_packer_does() {
    let env = vec![
        ("B".to_string(), "it's".to_string()),
        ("A".to_string(), "1".to_string()),
        ("A".to_string(), "2".to_string()),
    ];
    expect![[r#"A='2' B='it'"'"'s' PACKER_BUILDER_TYPE='galleon' PACKER_BUILD_NAME='web' "#]]
        .assert_eq(&crate::run::flatten_vars("web", &env));
}
