use expect_test::{Expect, expect};
use serde_json::json;

use super::*;

fn check(value: Value, q: Option<&str>, format: Format, expected: Expect) {
    let shaped = match q {
        Some(q) => query(&value, q).unwrap(),
        None => Shaped::plain(value),
    };
    expected.assert_eq(&render(shaped, format));
}

fn instances() -> Value {
    json!([
        {"instanceId": "1", "name": "web_1", "latestModelApplied": false, "healthState": null, "tags": {"a": "b"}, "zones": ["1", "2"]},
        {"instanceId": "0", "name": "web_0", "latestModelApplied": true, "healthState": "Healthy", "tags": {}, "zones": []},
    ])
}

#[test]
fn tsv_is_one_line_per_element_with_sorted_keys() {
    check(
        instances(),
        Some("[].name"),
        Format::Tsv,
        expect![[r#"
        web_1
        web_0
    "#]],
    );
    check(
        instances(),
        Some("sort_by(@, &to_number(instanceId))[].latestModelApplied"),
        Format::Tsv,
        expect![[r#"
        true
        false
    "#]],
    );
    // Keys sorted; a nested object is an empty field, a nested list its length, null empty.
    check(
        instances(),
        None,
        Format::Tsv,
        expect![[r#"
        	1	false	web_1		2
        Healthy	0	true	web_0		0
    "#]],
    );
}

#[test]
fn multi_select_hashes_keep_the_expressions_order() {
    check(
        instances(),
        Some("[].{name: name, id: instanceId}"),
        Format::Tsv,
        expect![[r#"
        web_1	1
        web_0	0
    "#]],
    );
    check(
        instances(),
        Some("[0].{z: name, a: instanceId}"),
        Format::Json,
        expect![[r#"
        {
          "z": "web_1",
          "a": "1"
        }
    "#]],
    );
}

#[test]
fn filters_and_pipes_work_as_in_az() {
    check(
        instances(),
        Some("[?to_string(instanceId)=='0'].name | [0]"),
        Format::Tsv,
        expect![[r#"
        web_0
    "#]],
    );
    assert!(query(&instances(), "[?").is_err());
}

#[test]
fn table_has_a_header_a_rule_and_scalar_columns() {
    check(
        instances(),
        Some("[].{Name: name, Latest: latestModelApplied}"),
        Format::Table,
        expect![[r#"
        Name   Latest
        -----  ------
        web_1  false
        web_0  true
    "#]],
    );
}

#[test]
fn yaml_is_block_style_and_quotes_what_needs_it() {
    check(
        json!({"name": "1.0.0", "ok": true, "list": [{"a": 1, "b": "yes"}, "x"], "empty": [], "n": null}),
        None,
        Format::Yaml,
        expect![[r#"
            empty: []
            list:
            - a: 1
              b: "yes"
            - x
            n: null
            name: "1.0.0"
            ok: true
        "#]],
    );
}

#[test]
fn json_sorts_keys_and_none_prints_nothing() {
    check(
        json!({"b": 1, "a": {"d": 1, "c": 2}}),
        None,
        Format::Json,
        expect![[r#"
        {
          "a": {
            "c": 2,
            "d": 1
          },
          "b": 1
        }
    "#]],
    );
    check(json!({"b": 1}), None, Format::None, expect![""]);
}

#[test]
fn flatten_lifts_properties_and_adds_resource_groups() {
    let doc = json!({
        "id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/loadBalancers/lb",
        "name": "lb",
        "properties": {
            "provisioningState": "Succeeded",
            "probes": [{"id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/loadBalancers/lb/probes/p",
                        "name": "p", "properties": {"port": 80}}]
        }
    });
    check(
        flatten(doc),
        None,
        Format::Json,
        expect![[r#"
        {
          "id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/loadBalancers/lb",
          "name": "lb",
          "probes": [
            {
              "id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/loadBalancers/lb/probes/p",
              "name": "p",
              "port": 80,
              "resourceGroup": "rg"
            }
          ],
          "provisioningState": "Succeeded",
          "resourceGroup": "rg"
        }
    "#]],
    );
}
