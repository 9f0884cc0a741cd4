//! The scale-set model: what makes an instance, per generation.
//!
//! The generation moves only when a change would make an instance differently (CONTRACT §1): its
//! `storageProfile`, `extensionProfile`, `osProfile.customData` and `sku.name`. Each generation's full
//! profile — secrets included — is kept in `<home>/models/<uid>/<generation>.json` (mode 0600), so an
//! instance reimaged later gets exactly the model it was built from, and `protectedSettings` never go
//! to the database, an answer or a log.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use galleon_api::gallery::GalleryImageVersion;
use galleon_api::image::Image;
use galleon_api::vmss::{Extension, VirtualMachineScaleSet, VmProfile};
use galleon_core::ids::ResourceId;
use galleon_core::version::Version;
use galleon_store::{Kind, Tx};
use serde::{Deserialize, Serialize};

use crate::error::{ApiError, ApiResult};
use crate::fleet::record::ImageRef;

pub const CUSTOM_SCRIPT: (&str, &str) = ("Microsoft.Azure.Extensions", "CustomScript");
pub const APP_HEALTH: (&str, &str) = ("Microsoft.ManagedServices", "ApplicationHealthLinux");

/// One generation of a scale set's model, secrets included.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Model {
    pub generation: u64,
    pub profile: VmProfile,
    pub sku_name: Option<String>,
}

impl Model {
    pub fn of(doc: &VirtualMachineScaleSet, generation: u64) -> Model {
        Model {
            generation,
            profile: doc.properties.virtual_machine_profile.clone().unwrap_or_default(),
            sku_name: doc.sku.as_ref().and_then(|s| s.name.clone()),
        }
    }

    /// A digest of everything that shapes an instance: equal fingerprints, same generation.
    pub fn fingerprint(&self) -> String {
        let p = &self.profile;
        let mut storage = p.storage_profile.clone().unwrap_or_default();
        if let Some(r) = storage.image_reference.as_mut() {
            r.exact_version = None;
            r.id = r.id.as_ref().map(|i| i.to_ascii_lowercase());
        }
        let shaping = serde_json::json!({
            "storageProfile": storage,
            "extensionProfile": p.extension_profile,
            "customData": p.os_profile.as_ref().and_then(|o| o.custom_data.clone()),
            "sku": self.sku_name,
        });
        galleon_images::Digest::of(shaping.to_string().as_bytes()).hex()
    }

    /// The fingerprint without the image reference: two models equal here differ at most in their image.
    pub fn fingerprint_without_image(&self) -> String {
        let mut m = self.clone();
        if let Some(r) = m.profile.storage_profile.as_mut().and_then(|s| s.image_reference.as_mut()) {
            *r = Default::default();
        }
        m.fingerprint()
    }

    pub fn image_reference(&self) -> Option<&str> {
        self.profile.storage_profile.as_ref()?.image_reference.as_ref()?.id.as_deref()
    }

    pub fn data_luns(&self) -> Vec<(u32, u32)> {
        self.profile
            .storage_profile
            .as_ref()
            .and_then(|s| s.data_disks.as_ref())
            .map(|d| d.iter().map(|d| (d.lun, d.disk_size_gb.unwrap_or(1))).collect())
            .unwrap_or_default()
    }

    pub fn extensions(&self) -> &[Extension] {
        self.profile.extension_profile.as_ref().and_then(|e| e.extensions.as_deref()).unwrap_or(&[])
    }

    pub fn extension(&self, (publisher, kind): (&str, &str)) -> Option<&Extension> {
        self.extensions().iter().find(|e| {
            e.properties.publisher.as_deref().is_some_and(|p| p.eq_ignore_ascii_case(publisher))
                && e.properties.extension_type.as_deref().is_some_and(|t| t.eq_ignore_ascii_case(kind))
        })
    }

    pub fn custom_data(&self) -> Option<&str> {
        self.profile.os_profile.as_ref().and_then(|o| o.custom_data.as_deref())
    }
}

/// The profile as answers show it: without `protectedSettings` and `customData`.
pub fn public(profile: &VmProfile) -> VmProfile {
    let mut p = profile.clone();
    if let Some(os) = p.os_profile.as_mut() {
        os.custom_data = None;
    }
    if let Some(exts) = p.extension_profile.as_mut().and_then(|e| e.extensions.as_mut()) {
        for e in exts {
            e.properties.protected_settings = None;
        }
    }
    p
}

/// A PUT that leaves out `protectedSettings` or `customData` keeps what the previous model had (that is
/// how `az vmss update` round-trips a scale set it read without them).
pub fn keep_secrets(new: &mut VmProfile, old: &VmProfile) {
    if let (Some(os), Some(old_os)) = (new.os_profile.as_mut(), old.os_profile.as_ref())
        && os.custom_data.is_none()
    {
        os.custom_data = old_os.custom_data.clone();
    }
    let old_exts = old.extension_profile.as_ref().and_then(|e| e.extensions.as_deref()).unwrap_or(&[]);
    if let Some(exts) = new.extension_profile.as_mut().and_then(|e| e.extensions.as_mut()) {
        for e in exts {
            if e.properties.protected_settings.is_none()
                && let Some(old) = old_exts.iter().find(|o| same_name(&o.name, &e.name))
            {
                e.properties.protected_settings = old.properties.protected_settings.clone();
            }
        }
    }
}

fn same_name(a: &Option<String>, b: &Option<String>) -> bool {
    matches!((a, b), (Some(a), Some(b)) if a.eq_ignore_ascii_case(b))
}

fn model_path(home: &Path, uid: &str, generation: u64) -> PathBuf {
    home.join("models").join(uid).join(format!("{generation}.json"))
}

/// Writes a generation's model (0600, atomically) before the database names it.
pub fn save(home: &Path, uid: &str, model: &Model) -> ApiResult<()> {
    let path = model_path(home, uid, model.generation);
    let dir = path.parent().ok_or_else(|| ApiError::internal("a model path without a directory"))?;
    fs::create_dir_all(dir).map_err(ApiError::internal)?;
    let tmp = path.with_extension("tmp");
    let body = serde_json::to_vec(model).map_err(ApiError::internal)?;
    let mut f = fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(ApiError::internal)?;
    f.write_all(&body).and_then(|_| f.sync_all()).map_err(ApiError::internal)?;
    fs::rename(&tmp, &path).map_err(ApiError::internal)?;
    Ok(())
}

pub fn load(home: &Path, uid: &str, generation: u64) -> ApiResult<Model> {
    let path = model_path(home, uid, generation);
    let bytes = fs::read(&path).map_err(|e| ApiError::internal(format!("the model {}: {e}", path.display())))?;
    serde_json::from_slice(&bytes).map_err(|e| ApiError::internal(format!("the model {}: {e}", path.display())))
}

/// Forgets every model of a deleted scale set.
pub fn forget(home: &Path, uid: &str) {
    let _ = fs::remove_dir_all(home.join("models").join(uid));
}

/// Checks what galleon can act on in a model, before anything is stored.
pub fn validate(model: &Model) -> ApiResult<()> {
    let mut luns = std::collections::BTreeSet::new();
    for (lun, size) in model.data_luns() {
        if lun > 63 {
            return Err(ApiError::invalid(format!("Data disk lun {lun} is out of range: luns go from 0 to 63.")));
        }
        if !(1..=32767).contains(&size) {
            return Err(ApiError::invalid(format!(
                "Data disk lun {lun} asks for {size} GB: sizes go from 1 to 32767."
            )));
        }
        if !luns.insert(lun) {
            return Err(ApiError::invalid(format!("Data disk lun {lun} is given twice.")));
        }
    }
    if let Some(data) = model.custom_data() {
        let bytes = base64_decode(data).ok_or_else(|| ApiError::invalid("osProfile.customData must be base64."))?;
        if bytes.len() > 64 * 1024 {
            return Err(ApiError::invalid("Custom data is limited to 64 KB, as in Azure."));
        }
    }
    let mut names = std::collections::BTreeSet::new();
    for e in model.extensions() {
        let name = e.name.clone().unwrap_or_default();
        if name.is_empty() {
            return Err(ApiError::invalid("Every extension needs a name."));
        }
        if !names.insert(name.to_ascii_lowercase()) {
            return Err(ApiError::invalid(format!("The extension '{name}' is given twice.")));
        }
        let publisher = e.properties.publisher.clone().unwrap_or_default();
        let kind = e.properties.extension_type.clone().unwrap_or_default();
        let is = |(p, t): (&str, &str)| publisher.eq_ignore_ascii_case(p) && kind.eq_ignore_ascii_case(t);
        if is(CUSTOM_SCRIPT) {
            custom_script_settings(e)?;
        } else if is(APP_HEALTH) {
            crate::net::app_health(e)?;
        } else {
            return Err(ApiError::invalid(format!(
                "The extension '{name}' ({publisher}.{kind}) is not one galleon can run: use {}.{} or {}.{}.",
                CUSTOM_SCRIPT.0, CUSTOM_SCRIPT.1, APP_HEALTH.0, APP_HEALTH.1
            )));
        }
    }
    Ok(())
}

/// A CustomScript's `fileUris` and `commandToExecute`, public and protected settings merged (protected
/// wins, as in Azure), and whether the command is a secret.
pub struct CustomScriptSettings {
    pub file_uris: Vec<String>,
    pub command: String,
    pub command_is_secret: bool,
}

pub fn custom_script_settings(e: &Extension) -> ApiResult<CustomScriptSettings> {
    let name = e.name.clone().unwrap_or_default();
    let public = e.properties.settings.clone().unwrap_or(serde_json::Value::Null);
    let secret = e.properties.protected_settings.clone().unwrap_or(serde_json::Value::Null);
    for (what, v) in [("settings", &public), ("protectedSettings", &secret)] {
        if !(v.is_null() || v.is_object()) {
            return Err(ApiError::invalid(format!("The {what} of the extension '{name}' must be a JSON object.")));
        }
    }
    let pick = |key: &str| {
        secret
            .get(key)
            .filter(|v| !v.is_null())
            .map(|v| (v, true))
            .or_else(|| public.get(key).filter(|v| !v.is_null()).map(|v| (v, false)))
    };
    let (command, command_is_secret) = match pick("commandToExecute") {
        Some((serde_json::Value::String(c), secret)) if !c.trim().is_empty() => (c.clone(), secret),
        Some(_) => {
            return Err(ApiError::invalid(format!(
                "The extension '{name}': commandToExecute must be a non-empty string."
            )));
        }
        None => {
            return Err(ApiError::invalid(format!(
                "The extension '{name}' needs a commandToExecute (in settings or protectedSettings)."
            )));
        }
    };
    let file_uris = match pick("fileUris") {
        None => vec![],
        Some((serde_json::Value::Array(a), _)) => {
            let mut uris = vec![];
            for u in a {
                let Some(s) = u.as_str() else {
                    return Err(ApiError::invalid(format!("The extension '{name}': fileUris must be strings.")));
                };
                if !(s.starts_with("file://") || s.starts_with("http://") || s.starts_with("https://")) {
                    return Err(ApiError::invalid(format!(
                        "The extension '{name}': the file URI '{s}' must be file://, http:// or https://."
                    )));
                }
                uris.push(s.to_string());
            }
            uris
        }
        Some(_) => return Err(ApiError::invalid(format!("The extension '{name}': fileUris must be a list."))),
    };
    Ok(CustomScriptSettings { file_uris, command, command_is_secret })
}

/// Decodes standard base64 (with or without padding); `None` if it is not base64.
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let s: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let trimmed: &[u8] = {
        let end = s.iter().rposition(|b| *b != b'=').map_or(0, |i| i + 1);
        if s.len() - end > 2 {
            return None;
        }
        &s[..end]
    };
    let mut out = Vec::with_capacity(trimmed.len() * 3 / 4);
    for chunk in trimmed.chunks(4) {
        let mut acc = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            acc |= val(*c)? << (18 - 6 * i);
        }
        let bytes = acc.to_be_bytes();
        match chunk.len() {
            4 => out.extend_from_slice(&bytes[1..4]),
            3 => out.extend_from_slice(&bytes[1..3]),
            2 => out.push(bytes[1]),
            _ => return None,
        }
    }
    Some(out)
}

/// Resolves an image reference to what an OS disk is made from, now. A definition (or `versions/latest`)
/// means the latest eligible version, leaving out `avoid` (versions that faulted on this scale set).
pub fn resolve_image(tx: &Tx<'_>, reference: &str, avoid: &[Version]) -> ApiResult<ImageRef> {
    let bad = || {
        ApiError::invalid(format!(
            "The image reference '{reference}' is not a gallery image definition, a gallery image version or a managed image."
        ))
    };
    let id = ResourceId::parse(reference).map_err(|_| bad())?;
    let (version_row, definition) = if id.is("Microsoft.Compute", &["galleries", "images"]) {
        (None, Some(id.clone()))
    } else if id.is("Microsoft.Compute", &["galleries", "images", "versions"]) {
        if id.name().eq_ignore_ascii_case("latest") {
            (None, id.parent())
        } else {
            let row = crate::resource::require(tx, &id, Kind::GalleryImageVersion)?;
            (Some(row), None)
        }
    } else if id.is("Microsoft.Compute", &["images"]) {
        let row = crate::resource::require(tx, &id, Kind::Image)?;
        let image: Image = row.parse()?;
        let info = image.properties.galleon;
        return Ok(ImageRef {
            reference: reference.to_string(),
            id: row.id.clone(),
            exact_version: None,
            digest: info.digest.ok_or_else(|| ApiError::internal("a managed image without a digest"))?,
            entrypoint: info.entrypoint.unwrap_or_else(|| crate::imaging::DEFAULT_ENTRYPOINT.into()),
        });
    } else {
        return Err(bad());
    };
    let row = match (version_row, definition) {
        (Some(row), _) => row,
        (None, Some(def)) => {
            crate::resource::require(tx, &def, Kind::GalleryImage)?;
            let (_, row) = crate::api::gallery::resolve_latest(tx, &def, avoid)?.ok_or_else(|| {
                ApiError::conflict(
                    "NoEligibleImageVersion",
                    format!(
                        "No version of '{}' is eligible as latest (all are excluded from latest, revoked, or faulted on this scale set).",
                        def.names.join("/")
                    ),
                )
            })?;
            row
        }
        (None, None) => return Err(bad()),
    };
    let version: GalleryImageVersion = row.parse()?;
    if version.properties.galleon.revoked {
        return Err(ApiError::conflict(
            "ImageVersionRevoked",
            format!("The image version '{}' is revoked and is never started again.", row.name),
        ));
    }
    let info = version.properties.galleon;
    Ok(ImageRef {
        reference: reference.to_string(),
        id: row.id.clone(),
        exact_version: Some(row.name.clone()),
        digest: info.digest.ok_or_else(|| ApiError::internal("an image version without a digest"))?,
        entrypoint: info.entrypoint.unwrap_or_else(|| crate::imaging::DEFAULT_ENTRYPOINT.into()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips_what_arm_stores() {
        assert_eq!(base64_decode("aGVsbG8=").as_deref(), Some(&b"hello"[..]));
        assert_eq!(base64_decode("aGVsbG8").as_deref(), Some(&b"hello"[..]));
        assert_eq!(base64_decode("aGk=").as_deref(), Some(&b"hi"[..]));
        assert_eq!(base64_decode("").as_deref(), Some(&b""[..]));
        assert!(base64_decode("not base64!").is_none());
        assert!(base64_decode("a===").is_none());
    }

    fn model(json: serde_json::Value) -> Model {
        let doc: VirtualMachineScaleSet = serde_json::from_value(json).unwrap();
        Model::of(&doc, 1)
    }

    #[test]
    fn only_instance_shaping_changes_move_the_fingerprint() {
        let base = serde_json::json!({"sku": {"name": "s", "capacity": 3}, "properties": {
            "upgradePolicy": {"mode": "Manual"},
            "virtualMachineProfile": {"storageProfile": {"imageReference": {"id": "/x/1"}},
                                      "networkProfile": {"healthProbe": {"id": "/p"}}}}});
        let fp = model(base.clone()).fingerprint();
        let mut same = base.clone();
        same["sku"]["capacity"] = 9.into();
        same["properties"]["upgradePolicy"]["mode"] = "Rolling".into();
        same["properties"]["virtualMachineProfile"]["networkProfile"]["healthProbe"]["id"] = "/q".into();
        assert_eq!(model(same).fingerprint(), fp, "capacity, policy and health probe do not shape instances");
        let mut image = base.clone();
        image["properties"]["virtualMachineProfile"]["storageProfile"]["imageReference"]["id"] = "/x/2".into();
        assert_ne!(model(image).fingerprint(), fp);
        let mut data = base.clone();
        data["properties"]["virtualMachineProfile"]["osProfile"] = serde_json::json!({"customData": "aGk="});
        assert_ne!(model(data).fingerprint(), fp);
        let mut sku = base;
        sku["sku"]["name"] = "t".into();
        assert_ne!(model(sku).fingerprint(), fp);
    }
}
