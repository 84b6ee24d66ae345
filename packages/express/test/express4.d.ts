// `express4` is an npm alias of Express 4, installed to test both majors; its API is typed
// like Express's for everything the tests use.
declare module "express4" {
  import express = require("express");
  export = express;
}
