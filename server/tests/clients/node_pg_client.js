// node-postgres (npm `pg`) against Quantatom: parameters, named statements, rowMode array,
// multi-statement queries. Usage: node node_pg_client.js postgresql://user@host:port/quantatom
const assert = require("node:assert/strict");
const { Client } = require("pg");

async function main() {
  const client = new Client({ connectionString: process.argv[2] });
  await client.connect();
  let checks = 0;
  const check = (what, got, expected) => {
    assert.deepStrictEqual(got, expected, what);
    checks += 1;
  };

  let result = await client.query("SELECT code, level FROM dim.entity WHERE code = $1", ["DE"]);
  check("parameter", result.rows, [{ code: "DE", level: 3 }]);

  for (const [code, parent] of [["DE", "EMEA"], ["EMEA", "Total"]]) {
    result = await client.query({ name: "parent-of", text: "SELECT parent FROM dim.entity WHERE code = $1", values: [code] });
    check(`named statement ${code}`, result.rows[0].parent, parent);
  }

  result = await client.query({ text: "SELECT code, is_leaf FROM dim.version ORDER BY sort_order", rowMode: "array" });
  check("rowMode array", result.rows, [["Actual", true], ["Budget", true], ["Forecast", true]]);

  const results = await client.query("SELECT 'one' AS a; SELECT 'two' AS b");
  check("multi-statement", results.map((r) => r.rows), [[{ a: "one" }], [{ b: "two" }]]);

  await assert.rejects(client.query("SELEC 1"), (error) => error.code === "42601");
  checks += 1;
  result = await client.query("SELECT $1::numeric AS n", ["12.50"]);
  check("numeric after an error", Number(result.rows[0].n), 12.5);

  // Integer literals are int4 as in PostgreSQL (node-postgres returns int8 as a string).
  for (const text of ["SELECT 1 AS one, 3000000000 AS big", "SELECT 1 AS one, 3000000000 AS big"]) {
    result = await client.query(text);
    check("int4 literal, simple protocol", result.rows, [{ one: 1, big: "3000000000" }]);
    result = await client.query(text, []);
    check("int4 literal, extended protocol", result.rows, [{ one: 1, big: "3000000000" }]);
  }

  // Columns are named as PostgreSQL names them, so rows read by name as code written for it
  // reads them.
  const counted = "SELECT count(*), max(level), 1 + 1 FROM dim.entity WHERE level = $1";
  result = await client.query(counted, [3]);
  check("PostgreSQL's column names", result.fields.map((f) => f.name), ["count", "max", "?column?"]);
  check("count by name", result.rows[0].count, "10");
  await client.end();
  console.log(`node-postgres: ${checks} checks passed`);
}

main().catch((error) => {
  console.error(`FAILED ${error.message}`);
  process.exit(1);
});
