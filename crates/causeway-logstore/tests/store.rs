//! LogStore on SQLite: the shared behavioural checks of `common/mod.rs` (an in-memory
//! oracle for every filter, sort, paging mode, stats, deletes, retention and content
//! search), each on a fresh `logs.db`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[macro_use]
mod common;

use causeway_logstore::LogStore;

async fn open() -> (tempfile::TempDir, LogStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = LogStore::open_sqlite(&dir.path().join("logs.db"))
        .await
        .unwrap();
    (dir, store)
}

macro_rules! sqlite_tests {
    ($($check:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $check() {
                let (_dir, store) = open().await;
                common::$check(store).await;
            }
        )*
    };
}

for_each_check!(sqlite_tests);
