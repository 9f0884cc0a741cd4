//! Images and galleries for end-to-end tests.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::Home;

/// An app root running the sample app of `bin` (the host's galleon binary: the process runtime has no
/// chroot, so test images stay a few bytes), with a page saying `title`. `unhealthy` makes its health
/// endpoint fail from the start.
pub fn sample_image(dir: &Path, bin: &Path, title: &str, unhealthy: bool) {
    std::fs::create_dir_all(dir).expect("an image directory");
    let start = dir.join("start");
    std::fs::write(&start, format!("#!/bin/sh\nexec '{}' sample-app\n", bin.display())).expect("start");
    std::fs::set_permissions(&start, std::fs::Permissions::from_mode(0o755)).expect("chmod start");
    std::fs::write(
        dir.join("index.html"),
        format!("<html><head><title>{title}</title></head><body>{title}</body></html>\n"),
    )
    .expect("index.html");
    if unhealthy {
        std::fs::write(dir.join("UNHEALTHY"), "").expect("UNHEALTHY");
    } else {
        let _ = std::fs::remove_file(dir.join("UNHEALTHY"));
    }
}

impl Home {
    /// Group `rg` (the default), gallery `g` and definition `web`.
    pub fn gallery(&self) {
        self.ok(&["group", "create", "-n", "rg"]);
        self.ok(&["configure", "--defaults", "group=rg"]);
        self.ok(&["sig", "create", "--gallery-name", "g"]);
        self.ok(&[
            "sig",
            "image-definition",
            "create",
            "--gallery-name",
            "g",
            "--gallery-image-definition",
            "web",
            "--publisher",
            "galleon",
            "--offer",
            "app",
            "--sku",
            "v",
            "--os-type",
            "Linux",
        ]);
    }

    /// Publishes `g/web/<version>` of the sample app saying "Welcome v<version>".
    pub fn publish_sample(&self, work: &Path, version: &str, unhealthy: bool) {
        let dir = work.join(format!("img-{version}"));
        sample_image(&dir, self.bin(), &format!("Welcome v{version}"), unhealthy);
        self.ok(&[
            "sig",
            "image-version",
            "create",
            "--gallery-name",
            "g",
            "--gallery-image-definition",
            "web",
            "--gallery-image-version",
            version,
            "--source",
            dir.to_str().expect("utf-8 path"),
        ]);
    }

    /// The id of `g/web/<version>`.
    pub fn version_id(&self, version: &str) -> String {
        self.ok(&["sig", "image-version", "show", "-r", "g", "-i", "web", "-e", version, "--query", "id", "-o", "tsv"])
            .trim()
            .to_string()
    }

    /// The private IP of an instance of scale set `vmss`.
    pub fn ip(&self, vmss: &str, id: u32) -> String {
        self.ok(&[
            "vmss",
            "list-instances",
            "-n",
            vmss,
            "--query",
            &format!("[?instanceId=='{id}'].privateIpAddress | [0]"),
            "-o",
            "tsv",
        ])
        .trim()
        .to_string()
    }

    /// `latestModelApplied` of every instance, by instance id.
    pub fn latest_model_applied(&self, vmss: &str) -> String {
        self.ok(&[
            "vmss",
            "list-instances",
            "-n",
            vmss,
            "--query",
            "sort_by(@, &to_number(instanceId))[].latestModelApplied",
            "-o",
            "tsv",
        ])
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
    }
}
