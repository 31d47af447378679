//! A fresh PostgreSQL database per test, on the server `DATABASE_URL` names,
//! dropped afterwards. Without `DATABASE_URL` the tests fail; they never skip.

use std::sync::atomic::{AtomicU32, Ordering};

use kadi::store::Store;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A database that is dropped with this value.
pub struct TestDb {
    pub url: String,
    admin_url: String,
    name: String,
}

/// The PostgreSQL server of the tests.
pub fn postgres_admin_url() -> String {
    std::env::var("DATABASE_URL")
        .ok()
        .filter(|url| url.starts_with("postgres"))
        .expect("DATABASE_URL must name a PostgreSQL server for the controller tests")
}

impl TestDb {
    pub async fn new() -> TestDb {
        let admin_url = postgres_admin_url();
        let name = format!(
            "kadi_ctl_test_{}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            rand::random::<u32>()
        );
        let admin = Store::connect(&admin_url, 1)
            .await
            .expect("admin connection");
        admin
            .execute_admin(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create test database");
        admin.close().await;
        let mut url = url::Url::parse(&admin_url).expect("DATABASE_URL is a URL");
        url.set_path(&format!("/{name}"));
        TestDb {
            url: url.to_string(),
            admin_url,
            name,
        }
    }

    /// A migrated store on this database, through `url` (the database's own
    /// URL, or one pointing at a proxy in front of it).
    pub async fn store_at(&self, url: &str) -> Store {
        let store = Store::connect(url, 8).await.expect("connect test db");
        store.migrate().await.expect("migrate test db");
        store
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        // Drop runs outside async code: use a thread with its own runtime.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async {
                if let Ok(store) = Store::connect(&admin_url, 1).await {
                    let _ = store
                        .execute_admin(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                    store.close().await;
                }
            });
        })
        .join();
    }
}
