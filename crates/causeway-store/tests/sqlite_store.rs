#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use causeway_config::parse_config;
use causeway_store::{ConfigStore, PluginRecord, StoreError};

#[tokio::test]
async fn seeds_then_keeps_api_edits_until_file_changes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.db");
    let file = parse_config(
        r#"{"providers":{"openai":{"keys":[{"name":"a","value":"sk-aaaaaaaaaaaa"}]}},"plugins":[{"name":"mocker","enabled":false}]}"#,
    )
    .unwrap()
    .file;
    let store = ConfigStore::open_sqlite(&path).await.unwrap();
    let report = store.seed_from_file(&file).await.unwrap();
    assert!(report.imported.contains(&"provider:openai".to_string()));
    let mut p = store.get_provider("openai").await.unwrap().unwrap();
    assert_eq!(p.keys.len(), 1);

    // An API edit survives a restart with the same file.
    p.settings.network_config.max_retries = 3;
    store.update_provider("openai", &p.settings).await.unwrap();
    store.close().await;
    let store = ConfigStore::open_sqlite(&path).await.unwrap();
    let report = store.seed_from_file(&file).await.unwrap();
    assert!(report.kept.contains(&"provider:openai".to_string()));
    let p = store.get_provider("openai").await.unwrap().unwrap();
    assert_eq!(p.settings.network_config.max_retries, 3);

    // A deletion through the API also survives.
    assert!(store.delete_provider("openai").await.unwrap());
    store.seed_from_file(&file).await.unwrap();
    assert!(store.get_provider("openai").await.unwrap().is_none());

    // Editing the file's section re-imports it.
    let changed = parse_config(
        r#"{"providers":{"openai":{"keys":[{"name":"a","value":"sk-bbbbbbbbbbbb"}]}},"plugins":[{"name":"mocker","enabled":false}]}"#,
    )
    .unwrap()
    .file;
    store.seed_from_file(&changed).await.unwrap();
    let p = store.get_provider("openai").await.unwrap().unwrap();
    assert_eq!(p.keys[0].value.raw(), "sk-bbbbbbbbbbbb");
    assert!(store.revision().await.unwrap() > 0);
}

#[tokio::test]
async fn plugin_and_key_crud() {
    let dir = tempfile::tempdir().unwrap();
    let store = ConfigStore::open_sqlite(&dir.path().join("c.db"))
        .await
        .unwrap();
    let rec = PluginRecord {
        name: "x".into(),
        enabled: true,
        path: None,
        config: serde_json::json!({"a": 1}),
        placement: Some("pre_builtin".into()),
        order: Some(2),
    };
    store.insert_plugin(&rec).await.unwrap();
    assert!(matches!(
        store.insert_plugin(&rec).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.get_plugin("x").await.unwrap().unwrap(), rec);
    let mut rec2 = rec.clone();
    rec2.enabled = false;
    store.update_plugin(&rec2).await.unwrap();
    assert!(!store.get_plugin("x").await.unwrap().unwrap().enabled);
    assert!(store.delete_plugin("x").await.unwrap());
    assert!(!store.delete_plugin("x").await.unwrap());

    let settings = causeway_config::ProviderSettings::default();
    store.insert_provider("openai", &settings).await.unwrap();
    assert!(matches!(
        store.insert_provider("openai", &settings).await,
        Err(StoreError::Conflict(_))
    ));
    let key: causeway_config::KeyConfig =
        serde_json::from_str(r#"{"id":"k1","name":"one","value":"sk-123456789"}"#).unwrap();
    store.insert_key("openai", &key).await.unwrap();
    assert!(matches!(
        store.insert_key("openai", &key).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store.insert_key("nope", &key).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(store.delete_key("openai", "k1").await.unwrap());
    assert!(store.delete_provider("openai").await.unwrap());
}

#[tokio::test]
async fn governance_entities_sessions_and_usage_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let store = ConfigStore::open_sqlite(&dir.path().join("c.db"))
        .await
        .unwrap();
    let vk = serde_json::json!({"id": "vk1", "name": "a"});
    store
        .insert_entity("virtual_key", "vk1", Some("hash-1"), &vk)
        .await
        .unwrap();
    assert!(matches!(
        store
            .insert_entity("virtual_key", "vk1", Some("hash-2"), &vk)
            .await,
        Err(StoreError::Conflict(_))
    ));
    // The value hash is unique across entities.
    assert!(matches!(
        store
            .insert_entity("virtual_key", "vk2", Some("hash-1"), &vk)
            .await,
        Err(StoreError::Conflict(_))
    ));
    store
        .insert_entity("team", "t1", None, &serde_json::json!({"id": "t1"}))
        .await
        .unwrap();
    store
        .insert_entity("team", "t2", None, &serde_json::json!({"id": "t2"}))
        .await
        .unwrap();
    let teams: Vec<serde_json::Value> = store.list_entities("team").await.unwrap();
    assert_eq!(teams.len(), 2);
    store
        .update_entity(
            "virtual_key",
            "vk1",
            &serde_json::json!({"id": "vk1", "name": "b"}),
        )
        .await
        .unwrap();
    let vks: Vec<serde_json::Value> = store.list_entities("virtual_key").await.unwrap();
    assert_eq!(vks[0]["name"], "b");
    assert!(matches!(
        store.update_entity("virtual_key", "nope", &vk).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(store.delete_entity("team", "t1").await.unwrap());
    assert!(!store.delete_entity("team", "t1").await.unwrap());

    store.insert_session("tok-hash", 2_000).await.unwrap();
    assert!(store.session_valid("tok-hash", 1_000).await.unwrap());
    assert!(!store.session_valid("tok-hash", 3_000).await.unwrap());
    assert!(!store.session_valid("other", 1_000).await.unwrap());
    assert_eq!(store.purge_expired_sessions(3_000).await.unwrap(), 1);

    assert!(store.load_usage_snapshot().await.unwrap().is_none());
    store.save_usage_snapshot("{\"a\":1}").await.unwrap();
    store.save_usage_snapshot("{\"a\":2}").await.unwrap();
    assert_eq!(
        store.load_usage_snapshot().await.unwrap().as_deref(),
        Some("{\"a\":2}")
    );
}
