//! Prints the JSON Schema (as `netflow schema` does): regenerates
//! `schema/netflow.schema.json`.
fn main() {
    print!("{}", netflow_schema::schema_text());
}
