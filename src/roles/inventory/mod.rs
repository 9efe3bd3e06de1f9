//! The inventory role: owns products, stock and (with the order flow) reservations.
//!
//! Handlers parse, call the domain functions in [`products`], and map the result.

mod products;

use std::sync::Arc;

use actix_web::{web, HttpResponse};

use crate::platform::problem::Problem;
use crate::platform::role::{RoleContext, RoleEntry, Routes};
use crate::platform::store::Store;

use products::{NewProduct, ProductError};

pub const ENTRY: RoleEntry = RoleEntry {
    manifest_source: include_str!("../../../roles/inventory.yaml"),
    start,
};

fn start(ctx: &RoleContext) -> anyhow::Result<Routes> {
    let store = ctx.store.clone();
    Ok(Arc::new(move |cfg| {
        cfg.app_data(web::Data::new(store.clone()))
            .route("/v1/products", web::get().to(list))
            .route("/v1/products", web::post().to(create))
            .route("/v1/products/{sku}", web::get().to(get));
    }))
}

impl From<ProductError> for Problem {
    fn from(e: ProductError) -> Self {
        match e {
            ProductError::Invalid(m) => Problem::bad_request(m),
            ProductError::Exists(_) => Problem::conflict(e.to_string()),
            ProductError::Store(e) => e.into(),
        }
    }
}

async fn create(
    store: web::Data<Arc<Store>>,
    body: web::Json<NewProduct>,
) -> Result<HttpResponse, Problem> {
    let product = body.into_inner().parse()?;
    let store = store.into_inner();
    let saved = product.clone();
    web::block(move || products::create_product(&store, &saved))
        .await
        .map_err(|e| Problem::internal(e.to_string()))??;
    Ok(HttpResponse::Created()
        .insert_header(("location", format!("/v1/products/{}", product.sku)))
        .json(product))
}

async fn get(store: web::Data<Arc<Store>>, sku: web::Path<String>) -> Result<HttpResponse, Problem> {
    products::check_sku(&sku).map_err(Problem::bad_request)?;
    products::get_product(&store, &sku)?
        .map(|p| HttpResponse::Ok().json(p))
        .ok_or_else(|| Problem::not_found(format!("no product `{sku}`")))
}

async fn list(store: web::Data<Arc<Store>>) -> Result<HttpResponse, Problem> {
    let all = products::list_products(&store)?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "products": all })))
}
