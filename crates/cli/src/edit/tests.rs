use galleon_api::schema::{self, Editable};
use serde_json::json;

use super::*;

fn version_doc() -> Value {
    // A version as `show` prints it: flattened, with az's resourceGroup.
    json!({
        "id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/galleries/g/images/web/versions/1.0.0",
        "name": "1.0.0",
        "type": "Microsoft.Compute/galleries/images/versions",
        "location": "local",
        "resourceGroup": "rg",
        "tags": null,
        "publishingProfile": {"excludeFromLatest": false, "endOfLifeDate": null, "publishedDate": "2026-11-23T10:00:00Z"},
        "storageProfile": {"source": {"id": null}, "osDiskImage": {"sizeInBytes": 10}},
        "provisioningState": "Succeeded",
        "galleon": {"digest": "sha256:00", "entrypoint": "start", "revoked": false}
    })
}

fn set_v(doc: &mut Value, a: &str) -> Result<(), EditError> {
    set(doc, &schema::of(Editable::GalleryImageVersion), "image version", a)
}

#[test]
fn set_takes_flattened_paths_case_insensitively_and_coerces() {
    let mut doc = version_doc();
    set_v(&mut doc, "publishingprofile.ExcludeFromLatest=true").unwrap();
    set_v(&mut doc, "publishingProfile.endOfLifeDate=2027-01-01").unwrap();
    set_v(&mut doc, "galleon.revoked=TRUE").unwrap();
    set_v(&mut doc, "tags.owner=me").unwrap();
    assert_eq!(doc["publishingProfile"]["excludeFromLatest"], json!(true));
    assert_eq!(doc["publishingProfile"]["endOfLifeDate"], json!("2027-01-01"));
    assert_eq!(doc["galleon"]["revoked"], json!(true));
    assert_eq!(doc["tags"], json!({"owner": "me"}));
}

#[test]
fn set_refuses_what_the_schema_does_not_allow() {
    let cases = [
        ("publishingProfile..x", "invalid --set path: 'publishingProfile..x' has an empty segment"),
        ("publishingProfile.excludeFromLatest", "--set 'publishingProfile.excludeFromLatest' must be PATH=VALUE"),
        (
            "publishingProfile.nope=1",
            "'publishingProfile.nope' is not a property of the image version: 'publishingProfile' has no 'nope' (it has: endOfLifeDate, excludeFromLatest, publishedDate, replicaCount, storageAccountType)",
        ),
        (
            "publishingProfile.excludeFromLatest=maybe",
            "'publishingProfile.excludeFromLatest' takes true or false, not 'maybe'",
        ),
        ("publishingProfile.replicaCount=two", "'publishingProfile.replicaCount' takes an integer, not 'two'"),
        ("provisioningState=Failed", "'provisioningState' is read-only: galleon sets it"),
        ("galleon.digest=sha256:11", "'galleon.digest' is read-only: galleon sets it"),
    ];
    for (input, want) in cases {
        let mut doc = version_doc();
        let before = doc.clone();
        assert_eq!(set_v(&mut doc, input).unwrap_err().0, want, "for {input}");
        assert_eq!(doc, before, "a refused --set changed the document ({input})");
    }
}

#[test]
fn missing_parents_are_created() {
    let mut doc = json!({"name": "g"});
    set(&mut doc, &schema::of(Editable::Gallery), "gallery", "description=hello").unwrap();
    let mut doc = json!({"name": "1.0.0"});
    set_v(&mut doc, "publishingProfile.excludeFromLatest=true").unwrap();
    assert_eq!(doc["publishingProfile"]["excludeFromLatest"], json!(true));
}

#[test]
fn enums_take_any_case_and_come_out_canonical() {
    let mut doc = json!({"name": "web"});
    let s = schema::of(Editable::GalleryImage);
    set(&mut doc, &s, "image definition", "osType=linux").unwrap();
    assert_eq!(doc["osType"], json!("Linux"));
    let e = set(&mut doc, &s, "image definition", "osType=plan9").unwrap_err();
    assert_eq!(e.0, "'osType' takes one of Linux, Windows, not 'plan9'");
}

#[test]
fn unflatten_puts_properties_back() {
    let mut doc = version_doc();
    set_v(&mut doc, "publishingProfile.excludeFromLatest=true").unwrap();
    let arm = unflatten(&doc, &schema::of(Editable::GalleryImageVersion));
    assert_eq!(arm["properties"]["publishingProfile"]["excludeFromLatest"], json!(true));
    assert_eq!(arm["properties"]["galleon"]["entrypoint"], json!("start"));
    assert!(arm.get("resourceGroup").is_none());
    assert!(arm.get("publishingProfile").is_none());
    assert_eq!(arm["name"], json!("1.0.0"));
    let parsed: galleon_api::gallery::GalleryImageVersion = serde_json::from_value(arm).unwrap();
    assert!(parsed.properties.publishing_profile.exclude_from_latest);
}

#[test]
fn remove_and_add_edit_lists_and_properties() {
    let mut doc = version_doc();
    let s = schema::of(Editable::GalleryImageVersion);
    remove(&mut doc, &s, "image version", "publishingProfile.endOfLifeDate", None).unwrap();
    assert!(doc["publishingProfile"].get("endOfLifeDate").is_none());
    assert!(add(&mut doc, &s, "image version", "publishingProfile", &["a=1".into()]).is_err());
}

#[test]
fn extension_type_survives_flatten_set_and_unflatten() {
    // An extension's `properties.type` collides with its resource `type`: az prints it `typePropertiesType`.
    let arm = json!({
        "id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachineScaleSets/web",
        "name": "web",
        "properties": {"virtualMachineProfile": {"extensionProfile": {"extensions": [{
            "name": "health",
            "type": "Microsoft.Compute/virtualMachineScaleSets/extensions",
            "properties": {"publisher": "Microsoft.ManagedServices", "type": "ApplicationHealthLinux", "settings": {"port": 8080}}
        }]}}}
    });
    let mut flat = crate::output::flatten(arm);
    let ext = &flat["virtualMachineProfile"]["extensionProfile"]["extensions"][0];
    assert_eq!(ext["typePropertiesType"], json!("ApplicationHealthLinux"));
    assert_eq!(ext["type"], json!("Microsoft.Compute/virtualMachineScaleSets/extensions"));
    let s = schema::of(Editable::ScaleSet);
    set(
        &mut flat,
        &s,
        "scale set",
        "virtualMachineProfile.extensionProfile.extensions[0].typePropertiesType=ApplicationHealthWindows",
    )
    .unwrap();
    let back = unflatten(&flat, &s);
    let props = &back["properties"]["virtualMachineProfile"]["extensionProfile"]["extensions"][0]["properties"];
    assert_eq!(props["type"], json!("ApplicationHealthWindows"), "{back}");
    assert_eq!(props["publisher"], json!("Microsoft.ManagedServices"));
    let parsed: galleon_api::vmss::VirtualMachineScaleSet = serde_json::from_value(back).unwrap();
    let e = &parsed.properties.virtual_machine_profile.unwrap().extension_profile.unwrap().extensions.unwrap()[0];
    assert_eq!(e.properties.extension_type.as_deref(), Some("ApplicationHealthWindows"));
}
