//! What can be done inside a transaction: typed reads and writes of resource rows and home facts.

use rusqlite::{OptionalExtension, Transaction, params};

use crate::{Result, StoreError};

/// The kinds of resources the store keeps. The string form is what the `kind` column holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    ResourceGroup,
    Gallery,
    GalleryImage,
    GalleryImageVersion,
    Image,
    ScaleSet,
    LoadBalancer,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::ResourceGroup => "resourceGroup",
            Kind::Gallery => "gallery",
            Kind::GalleryImage => "galleryImage",
            Kind::GalleryImageVersion => "galleryImageVersion",
            Kind::Image => "image",
            Kind::ScaleSet => "virtualMachineScaleSet",
            Kind::LoadBalancer => "loadBalancer",
        }
    }

    fn parse(s: &str) -> Option<Kind> {
        [
            Kind::ResourceGroup,
            Kind::Gallery,
            Kind::GalleryImage,
            Kind::GalleryImageVersion,
            Kind::Image,
            Kind::ScaleSet,
            Kind::LoadBalancer,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// One stored resource. `id` is the ARM id as created; identity is its lower-cased form.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub kind: Kind,
    pub id: String,
    pub group: String,
    pub parent: Option<String>,
    pub name: String,
    pub doc: serde_json::Value,
    pub created_ms: i64,
    pub updated_ms: i64,
}

impl Row {
    /// Deserialises the document into its wire type.
    pub fn parse<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        Ok(serde_json::from_value(self.doc.clone())?)
    }
}

/// A row as SQLite gives it, before its kind and document are parsed.
struct RawRow {
    kind: String,
    id: String,
    group: String,
    parent: Option<String>,
    name: String,
    doc: String,
    created_ms: i64,
    updated_ms: i64,
}

impl RawRow {
    fn parse(self) -> Result<Row> {
        let kind =
            Kind::parse(&self.kind).ok_or_else(|| StoreError::Corrupt(format!("unknown kind '{}'", self.kind)))?;
        Ok(Row {
            kind,
            id: self.id,
            group: self.group,
            parent: self.parent,
            name: self.name,
            doc: serde_json::from_str(&self.doc)?,
            created_ms: self.created_ms,
            updated_ms: self.updated_ms,
        })
    }
}

/// A transaction in progress; see `Store::read` and `Store::write`.
pub struct Tx<'a> {
    tx: &'a Transaction<'a>,
}

const COLUMNS: &str = "kind, id, group_key, parent_key, name, doc, created_ms, updated_ms";

fn key(s: &str) -> String {
    s.to_ascii_lowercase()
}

impl<'a> Tx<'a> {
    pub(crate) fn new(tx: &'a Transaction<'a>) -> Tx<'a> {
        Tx { tx }
    }

    pub(crate) fn raw(&self) -> &Transaction<'a> {
        self.tx
    }

    fn rows(&self, sql: &str, args: impl rusqlite::Params) -> Result<Vec<Row>> {
        let mut stmt = self.tx.prepare_cached(sql)?;
        let raw = stmt
            .query_map(args, |r| {
                Ok(RawRow {
                    kind: r.get(0)?,
                    id: r.get(1)?,
                    group: r.get(2)?,
                    parent: r.get(3)?,
                    name: r.get(4)?,
                    doc: r.get(5)?,
                    created_ms: r.get(6)?,
                    updated_ms: r.get(7)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        raw.into_iter().map(RawRow::parse).collect()
    }

    /// A fact about the home (subscription id, address block, …).
    pub fn meta(&self, key: &str) -> Result<Option<String>> {
        Ok(self.tx.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0)).optional()?)
    }

    pub fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        self.tx.execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            [key, value],
        )?;
        Ok(())
    }

    /// The resource with this id (any casing), if any.
    pub fn get(&self, id: &str) -> Result<Option<Row>> {
        Ok(self.rows(&format!("SELECT {COLUMNS} FROM resources WHERE key = ?1"), [key(id)])?.pop())
    }

    /// Creates a resource; `StoreError::Exists` if one with this id is already there.
    pub fn insert(&self, row: &Row) -> Result<()> {
        if self.get(&row.id)?.is_some() {
            return Err(StoreError::Exists(row.id.clone()));
        }
        self.upsert(row)
    }

    /// Creates or replaces a resource (the id's casing and creation time stay those of the first write).
    pub fn upsert(&self, row: &Row) -> Result<()> {
        self.tx.execute(
            "INSERT INTO resources (key, kind, group_key, parent_key, id, name, doc, created_ms, updated_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
             ON CONFLICT(key) DO UPDATE SET doc = excluded.doc, updated_ms = excluded.updated_ms",
            params![
                key(&row.id),
                row.kind.as_str(),
                key(&row.group),
                row.parent.as_deref().map(key),
                row.id,
                row.name,
                serde_json::to_string(&row.doc)?,
                row.created_ms,
                row.updated_ms,
            ],
        )?;
        Ok(())
    }

    /// Deletes a resource; whether it existed.
    pub fn delete(&self, id: &str) -> Result<bool> {
        Ok(self.tx.execute("DELETE FROM resources WHERE key = ?1", [key(id)])? > 0)
    }

    /// The children of `parent` of one kind, in creation order.
    pub fn children(&self, parent: &str, kind: Kind) -> Result<Vec<Row>> {
        self.rows(
            &format!("SELECT {COLUMNS} FROM resources WHERE parent_key = ?1 AND kind = ?2 ORDER BY created_ms, key"),
            [key(parent), kind.as_str().to_string()],
        )
    }

    /// The resources of one kind in a group, in creation order.
    pub fn in_group(&self, group: &str, kind: Kind) -> Result<Vec<Row>> {
        self.rows(
            &format!("SELECT {COLUMNS} FROM resources WHERE group_key = ?1 AND kind = ?2 ORDER BY created_ms, key"),
            [key(group), kind.as_str().to_string()],
        )
    }

    /// Every resource in a group, of any kind but the group itself.
    pub fn all_in_group(&self, group: &str) -> Result<Vec<Row>> {
        self.rows(
            &format!("SELECT {COLUMNS} FROM resources WHERE group_key = ?1 AND kind != ?2 ORDER BY created_ms, key"),
            [key(group), Kind::ResourceGroup.as_str().to_string()],
        )
    }

    /// Every resource of one kind, in creation order.
    pub fn all(&self, kind: Kind) -> Result<Vec<Row>> {
        self.rows(&format!("SELECT {COLUMNS} FROM resources WHERE kind = ?1 ORDER BY created_ms, key"), [kind.as_str()])
    }
}

/// Long-running operations: their status documents, by operation id.
impl Tx<'_> {
    pub fn put_operation(&self, id: &str, target: &str, doc: &serde_json::Value, created_ms: i64) -> Result<()> {
        self.tx.execute(
            "INSERT INTO operations (id, target, doc, created_ms) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(id) DO UPDATE SET doc = excluded.doc",
            params![id, key(target), serde_json::to_string(doc)?, created_ms],
        )?;
        Ok(())
    }

    pub fn operation(&self, id: &str) -> Result<Option<serde_json::Value>> {
        let doc: Option<String> =
            self.tx.query_row("SELECT doc FROM operations WHERE id = ?1", [id], |r| r.get(0)).optional()?;
        Ok(doc.map(|d| serde_json::from_str(&d)).transpose()?)
    }

    /// Operations whose document says they are still in progress (to resume or fail after a restart).
    pub fn operations_in_progress(&self) -> Result<Vec<(String, serde_json::Value)>> {
        let mut stmt = self.tx.prepare_cached(
            "SELECT id, doc FROM operations WHERE json_extract(doc, '$.status') = 'InProgress' ORDER BY created_ms",
        )?;
        let raw = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        let mut out = vec![];
        for row in raw {
            let (id, doc) = row?;
            out.push((id, serde_json::from_str(&doc)?));
        }
        Ok(out)
    }

    /// Forgets finished operations created before `before_ms` (they are only kept for polling).
    pub fn prune_operations(&self, before_ms: i64) -> Result<usize> {
        Ok(self.tx.execute(
            "DELETE FROM operations WHERE created_ms < ?1 AND json_extract(doc, '$.status') != 'InProgress'",
            [before_ms],
        )?)
    }
}
