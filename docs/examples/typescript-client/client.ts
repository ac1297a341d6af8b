// A typed client of shop's HTTP API: the types are generated from shop's
// api/openapi.yaml (npm run generate), the calls made with openapi-fetch, so
// a path, a field or a status the contract does not have fails to compile.
//
//   npm install && npm run generate && npm run build && SHOP_URL=http://localhost:8080 node dist/client.js
//
// It registers a customer, signs in, orders the first product in the
// catalogue and reads the order back once the system has decided it.
import createClient from "openapi-fetch";
import type { paths } from "./shop-api.js";

const shop = createClient<paths>({ baseUrl: process.env.SHOP_URL ?? "http://localhost:8080" });

const email = `ts-${Date.now()}@example.com`;
const password = "a long enough password";
const registered = await shop.POST("/v1/users", { body: { email, name: "TypeScript client", password } });
if (registered.error) throw new Error(`register: ${registered.response.status} ${registered.error.detail ?? ""}`);

const signedIn = await shop.POST("/v1/tokens", { body: { email, password } });
if (signedIn.error) throw new Error(`sign in: ${signedIn.response.status} ${signedIn.error.detail ?? ""}`);
const headers = { Authorization: `Bearer ${signedIn.data.token}` };

const catalogue = await shop.GET("/v1/products", { params: { query: { limit: 10 } } });
if (catalogue.error) throw new Error(`list products: ${catalogue.response.status}`);
const product = catalogue.data.items[0];
if (!product) throw new Error("the catalogue is empty: add a product first");

const placed = await shop.POST("/v1/orders", { body: { items: [{ product_id: product.id, quantity: 1 }] }, headers });
if (placed.error) throw new Error(`place order: ${placed.response.status} ${placed.error.detail ?? ""}`);

// The order is pending until inventory decides; min_version waits for that
// decision (version 2) in the read model.
const read = await shop.GET("/v1/orders/{id}", {
  params: { path: { id: placed.data.id }, query: { min_version: placed.data.version + 1 } },
  headers,
});
if (read.error) throw new Error(`read order: ${read.response.status}`);
console.log(JSON.stringify({ order: read.data.id, status: read.data.status, total_cents: read.data.total_cents, stale: read.response.headers.get("X-Read-Stale") === "true" }));
