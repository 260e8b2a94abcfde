//! Kept plans run with bound parameters as if the values had been written in the query.

use datafusion::common::{ParamValues, ScalarValue};
use datafusion::physical_plan::{collect, displayable};
use quantatom_engine::plan_reuse::ReusablePlan;

use crate::support::demo_engine;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bound_parameters_are_folded_into_literals_before_physical_planning() {
    let dir = tempfile::tempdir().unwrap();
    let engine = demo_engine(dir.path(), 20_000).await;
    let state = engine.new_session().state();
    let sql =
        "SELECT code, name FROM dim.product WHERE code = 'P' || lpad(CAST($1 AS TEXT), 4, '0')";
    let plan = state.create_logical_plan(sql).await.unwrap();
    let reusable = ReusablePlan::try_new(&state, &plan)
        .unwrap()
        .expect("a plain query is kept");
    for (value, code, rows) in [(1, "P0001", 1), (9999, "P9999", 0)] {
        let parameters = ParamValues::List(vec![ScalarValue::Int64(Some(value)).into()]);
        let physical = reusable.physical_plan(&state, parameters).await.unwrap();
        let shown = displayable(physical.as_ref()).indent(true).to_string();
        assert!(
            shown.contains(&format!("code@0 = {code}")),
            "the filter compares with a literal:\n{shown}"
        );
        let batches = collect(physical, state.task_ctx()).await.unwrap();
        let codes: Vec<String> = batches
            .iter()
            .flat_map(|batch| {
                let column = batch
                    .column(0)
                    .as_any()
                    .downcast_ref::<datafusion::arrow::array::StringArray>()
                    .unwrap();
                column
                    .iter()
                    .map(|code| code.unwrap().to_owned())
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(codes, vec![code; rows]);
    }
}
