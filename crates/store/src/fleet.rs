//! Scale-set instances, the home's loopback addresses, counters and the decision log.
//!
//! Instance records are JSON documents the server defines; the store keeps them durable and indexed by
//! (scale set, instance id). Addresses are handed out lowest-first from a range the caller gives.

use std::net::Ipv4Addr;

use rusqlite::{OptionalExtension, params};

use crate::{Result, StoreError, Tx};

fn key(s: &str) -> String {
    s.to_ascii_lowercase()
}

/// One entry of the decision log.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub seq: i64,
    pub instance_id: Option<u32>,
    pub at_ms: i64,
    pub doc: serde_json::Value,
}

impl Tx<'_> {
    /// The instances of a scale set, by instance id.
    pub fn instances(&self, scale_set: &str) -> Result<Vec<(u32, serde_json::Value)>> {
        let mut stmt = self
            .raw()
            .prepare_cached("SELECT instance_id, doc FROM instances WHERE scale_set = ?1 ORDER BY instance_id")?;
        let rows = stmt.query_map([key(scale_set)], |r| Ok((r.get::<_, u32>(0)?, r.get::<_, String>(1)?)))?;
        let mut out = vec![];
        for row in rows {
            let (id, doc) = row?;
            out.push((id, serde_json::from_str(&doc)?));
        }
        Ok(out)
    }

    /// Every instance of every scale set: (scale set key, instance id, record).
    pub fn all_instances(&self) -> Result<Vec<(String, u32, serde_json::Value)>> {
        let mut stmt = self
            .raw()
            .prepare_cached("SELECT scale_set, instance_id, doc FROM instances ORDER BY scale_set, instance_id")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, u32>(1)?, r.get::<_, String>(2)?)))?;
        let mut out = vec![];
        for row in rows {
            let (set, id, doc) = row?;
            out.push((set, id, serde_json::from_str(&doc)?));
        }
        Ok(out)
    }

    pub fn instance(&self, scale_set: &str, id: u32) -> Result<Option<serde_json::Value>> {
        let doc: Option<String> = self
            .raw()
            .query_row(
                "SELECT doc FROM instances WHERE scale_set = ?1 AND instance_id = ?2",
                params![key(scale_set), id],
                |r| r.get(0),
            )
            .optional()?;
        Ok(doc.map(|d| serde_json::from_str(&d)).transpose()?)
    }

    pub fn put_instance(&self, scale_set: &str, id: u32, doc: &serde_json::Value) -> Result<()> {
        self.raw().execute(
            "INSERT INTO instances (scale_set, instance_id, doc) VALUES (?1, ?2, ?3)
             ON CONFLICT(scale_set, instance_id) DO UPDATE SET doc = excluded.doc",
            params![key(scale_set), id, serde_json::to_string(doc)?],
        )?;
        Ok(())
    }

    pub fn delete_instance(&self, scale_set: &str, id: u32) -> Result<bool> {
        Ok(self
            .raw()
            .execute("DELETE FROM instances WHERE scale_set = ?1 AND instance_id = ?2", params![key(scale_set), id])?
            > 0)
    }

    /// The next value of a counter (1, 2, …), durable: never handed out twice.
    pub fn next(&self, counter: &str) -> Result<i64> {
        let v: i64 = self.raw().query_row(
            "INSERT INTO counters (name, value) VALUES (?1, 1)
             ON CONFLICT(name) DO UPDATE SET value = value + 1 RETURNING value",
            [counter],
            |r| r.get(0),
        )?;
        Ok(v)
    }

    /// The current value of a counter (0 if never used).
    pub fn counter(&self, counter: &str) -> Result<i64> {
        Ok(self
            .raw()
            .query_row("SELECT value FROM counters WHERE name = ?1", [counter], |r| r.get(0))
            .optional()?
            .unwrap_or(0))
    }

    /// The address `owner` holds, if any.
    pub fn address_of(&self, owner: &str) -> Result<Option<Ipv4Addr>> {
        let a: Option<String> =
            self.raw().query_row("SELECT address FROM addresses WHERE owner = ?1", [owner], |r| r.get(0)).optional()?;
        a.map(|s| s.parse().map_err(|_| StoreError::Corrupt(format!("address '{s}'")))).transpose()
    }

    /// Gives `owner` an address from `first..=last` (the lowest free one), or the one it already holds.
    pub fn allocate_address(&self, owner: &str, first: Ipv4Addr, last: Ipv4Addr) -> Result<Option<Ipv4Addr>> {
        if let Some(a) = self.address_of(owner)? {
            return Ok(Some(a));
        }
        let mut stmt = self.raw().prepare_cached("SELECT address FROM addresses")?;
        let used: std::collections::HashSet<u32> = stmt
            .query_map([], |r| r.get::<_, String>(0))?
            .filter_map(|r| r.ok())
            .filter_map(|s| s.parse::<Ipv4Addr>().ok())
            .map(u32::from)
            .collect();
        let Some(free) = (u32::from(first)..=u32::from(last)).find(|a| !used.contains(a)) else { return Ok(None) };
        let addr = Ipv4Addr::from(free);
        self.raw()
            .execute("INSERT INTO addresses (address, owner) VALUES (?1, ?2)", [addr.to_string(), owner.to_string()])?;
        Ok(Some(addr))
    }

    pub fn release_address(&self, owner: &str) -> Result<()> {
        self.raw().execute("DELETE FROM addresses WHERE owner = ?1", [owner])?;
        Ok(())
    }

    /// Appends to the decision log.
    pub fn log_event(
        &self,
        scale_set: &str,
        instance_id: Option<u32>,
        at_ms: i64,
        doc: &serde_json::Value,
    ) -> Result<i64> {
        self.raw().execute(
            "INSERT INTO events (scale_set, instance_id, at_ms, doc) VALUES (?1, ?2, ?3, ?4)",
            params![key(scale_set), instance_id, at_ms, serde_json::to_string(doc)?],
        )?;
        Ok(self.raw().last_insert_rowid())
    }

    /// The last `limit` log entries of a scale set (of one instance when given), oldest first.
    pub fn events(&self, scale_set: &str, instance_id: Option<u32>, limit: usize) -> Result<Vec<Event>> {
        let mut stmt = self.raw().prepare_cached(
            "SELECT seq, instance_id, at_ms, doc FROM events
             WHERE scale_set = ?1 AND (?2 IS NULL OR instance_id = ?2)
             ORDER BY seq DESC LIMIT ?3",
        )?;
        let rows = stmt.query_map(params![key(scale_set), instance_id, limit as i64], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, Option<u32>>(1)?, r.get::<_, i64>(2)?, r.get::<_, String>(3)?))
        })?;
        let mut out = vec![];
        for row in rows {
            let (seq, instance_id, at_ms, doc) = row?;
            out.push(Event { seq, instance_id, at_ms, doc: serde_json::from_str(&doc)? });
        }
        out.reverse();
        Ok(out)
    }

    /// Forgets the instances, log and counters of a deleted scale set.
    pub fn forget_scale_set(&self, scale_set: &str) -> Result<()> {
        let k = key(scale_set);
        self.raw().execute("DELETE FROM instances WHERE scale_set = ?1", [&k])?;
        self.raw().execute("DELETE FROM events WHERE scale_set = ?1", [&k])?;
        Ok(())
    }
}

/// Rolling upgrades: their records by id, the active one of a scale set, and the history.
impl Tx<'_> {
    pub fn put_upgrade(
        &self,
        id: &str,
        scale_set: &str,
        doc: &serde_json::Value,
        active: bool,
        started_ms: i64,
    ) -> Result<()> {
        self.raw().execute(
            "INSERT INTO upgrades (id, scale_set, doc, active, started_ms) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT(id) DO UPDATE SET doc = excluded.doc, active = excluded.active",
            params![id, key(scale_set), serde_json::to_string(doc)?, active, started_ms],
        )?;
        Ok(())
    }

    pub fn upgrade(&self, id: &str) -> Result<Option<serde_json::Value>> {
        let doc: Option<String> =
            self.raw().query_row("SELECT doc FROM upgrades WHERE id = ?1", [id], |r| r.get(0)).optional()?;
        Ok(doc.map(|d| serde_json::from_str(&d)).transpose()?)
    }

    /// The upgrades of a scale set, oldest first: (id, record, active).
    pub fn upgrades(&self, scale_set: &str) -> Result<Vec<(String, serde_json::Value, bool)>> {
        let mut stmt = self
            .raw()
            .prepare_cached("SELECT id, doc, active FROM upgrades WHERE scale_set = ?1 ORDER BY started_ms, id")?;
        let rows = stmt.query_map([key(scale_set)], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, bool>(2)?))
        })?;
        let mut out = vec![];
        for row in rows {
            let (id, doc, active) = row?;
            out.push((id, serde_json::from_str(&doc)?, active));
        }
        Ok(out)
    }

    /// Every active upgrade: (id, scale set key).
    pub fn active_upgrades(&self) -> Result<Vec<(String, String)>> {
        let mut stmt =
            self.raw().prepare_cached("SELECT id, scale_set FROM upgrades WHERE active = 1 ORDER BY started_ms")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// Forgets the upgrades of a deleted scale set.
    pub fn forget_upgrades(&self, scale_set: &str) -> Result<()> {
        self.raw().execute("DELETE FROM upgrades WHERE scale_set = ?1", [key(scale_set)])?;
        Ok(())
    }
}
