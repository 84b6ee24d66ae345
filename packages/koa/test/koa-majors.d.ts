// `koa2` and `koa3` are npm aliases of Koa 2 and Koa 3, installed to test both majors; their API
// is typed like Koa's (`@types/koa`) for everything the tests use.
declare module "koa2" {
  import Koa = require("koa");
  export = Koa;
}
declare module "koa3" {
  import Koa = require("koa");
  export = Koa;
}
