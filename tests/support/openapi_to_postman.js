// Converts an OpenAPI document into a Postman collection with openapi-to-postmanv2 (pinned in
// package.json), as Postman's own "Import" does, with examples for bodies and parameters:
//   node openapi_to_postman.js DOCUMENT.json COLLECTION.json
const fs = require("fs");
const path = require("path");
const converter = require(path.join(__dirname, "..", "..", "node_modules", "openapi-to-postmanv2"));

const [documentPath, collectionPath] = process.argv.slice(2);
const options = { requestParametersResolution: "Example", exampleParametersResolution: "Example" };
converter.convert({ type: "string", data: fs.readFileSync(documentPath, "utf8") }, options, (error, result) => {
  if (error || !result.result) {
    console.error(error || result.reason);
    process.exit(1);
  }
  fs.writeFileSync(collectionPath, JSON.stringify(result.output[0].data, null, 1));
});
