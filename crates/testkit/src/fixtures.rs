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

/// An app root whose app serves HTTPS on port 8443 of its private address with a self-signed certificate
/// made at start: openssl's `s_server`, answering each `GET /FILE` with the file (`health.json` says
/// `{"ApplicationHealthState": "Healthy"}` until changed).
pub fn tls_image(dir: &Path) {
    std::fs::create_dir_all(dir).expect("an image directory");
    let start = dir.join("start");
    std::fs::write(
        &start,
        r#"#!/bin/sh
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout key.pem -out cert.pem -days 2 -subj /CN=galleon 2>/dev/null
echo '{"ApplicationHealthState": "Healthy"}' > health.json
exec openssl s_server -accept "$GALLEON_PRIVATE_IP:8443" -cert cert.pem -key key.pem -WWW -quiet
"#,
    )
    .expect("start");
    std::fs::set_permissions(&start, std::fs::Permissions::from_mode(0o755)).expect("chmod start");
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

impl Home {
    /// `vmss extension set` of the Application Health extension (v2) on scale set `vmss`, with `settings`
    /// (JSON).
    pub fn set_app_health(&self, vmss: &str, settings: &str) -> crate::Run {
        self.galleon(&[
            "vmss",
            "extension",
            "set",
            "--vmss-name",
            vmss,
            "--name",
            "ApplicationHealthLinux",
            "--publisher",
            "Microsoft.ManagedServices",
            "--version",
            "2.0",
            "--settings",
            settings,
        ])
    }

    /// An instance's `healthState`, empty when it cannot be read (the instance is gone, say).
    pub fn health_state(&self, vmss: &str, id: u32) -> String {
        let id = id.to_string();
        let q = ["vmss", "show", "-n", vmss, "--instance-id", &id, "--query", "healthState", "-o", "tsv"];
        self.galleon(&q).stdout.trim().to_string()
    }
}

impl Home {
    /// Scale set `web` of `n` instances of `g/web/<version>` behind load balancer `webLB`: an Http probe on
    /// `/health` (1 s, threshold 2), a Tcp rule on 18080 and an Http rule on 18081, NAT to port 8080.
    /// Waits until the Http frontend reaches every instance; returns the frontend's address.
    pub fn lb_setup(&self, work: &Path, n: u32, image: &str, extra: &[&str]) -> String {
        let _ = work;
        let count = n.to_string();
        let mut args = vec![
            "vmss",
            "create",
            "-n",
            "web",
            "--image",
            image,
            "--instance-count",
            &count,
            "--data-disk-sizes-gb",
            "1",
            "--lb",
            "webLB",
            "--backend-port",
            "8080",
        ];
        args.extend_from_slice(extra);
        self.ok(&args);
        self.ok(&[
            "network",
            "lb",
            "probe",
            "create",
            "--lb-name",
            "webLB",
            "-n",
            "health",
            "--protocol",
            "Http",
            "--port",
            "8080",
            "--path",
            "/health",
            "--interval",
            "1",
            "--threshold",
            "2",
        ]);
        self.ok(&[
            "network",
            "lb",
            "rule",
            "create",
            "--lb-name",
            "webLB",
            "-n",
            "tcp",
            "--protocol",
            "Tcp",
            "--frontend-port",
            "18080",
            "--backend-port",
            "8080",
            "--backend-pool-name",
            "webLBBEPool",
            "--probe",
            "health",
        ]);
        self.ok(&[
            "network",
            "lb",
            "rule",
            "create",
            "--lb-name",
            "webLB",
            "-n",
            "http",
            "--protocol",
            "Http",
            "--frontend-port",
            "18081",
            "--backend-port",
            "8080",
            "--backend-pool-name",
            "webLBBEPool",
            "--probe",
            "health",
        ]);
        let lb = self
            .ok(&[
                "network",
                "lb",
                "show",
                "-n",
                "webLB",
                "--query",
                "frontendIPConfigurations[0].privateIPAddress",
                "-o",
                "tsv",
            ])
            .trim()
            .to_string();
        crate::wait_until(std::time::Duration::from_secs(30), "the Http frontend reaches every instance", || {
            let mut seen = std::collections::BTreeSet::new();
            for _ in 0..(n * 4) {
                if let Some(id) = crate::http::body(&format!("http://{lb}:18081/whoami")) {
                    seen.insert(id);
                }
            }
            seen.len() == n as usize
        });
        lb
    }
}
