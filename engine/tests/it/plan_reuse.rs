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
    let reusable = ReusablePlan::<()>::try_new(&state, &plan)
        .unwrap()
        .expect("a plain query is kept");
    for (value, code, rows) in [(1, "P0001", 1), (9999, "P9999", 0)] {
        let parameters = ParamValues::List(vec![ScalarValue::Int64(Some(value)).into()]);
        let physical = reusable
            .physical_plan(&state, parameters)
            .await
            .unwrap()
            .into_plan()
            .unwrap();
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

/// What a caller keeps beside a kept physical plan (the wire's encoded answer) is the same for
/// every run while the scanned cube stands still, and new once a commit moved it on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_is_kept_beside_a_plan_lives_until_a_scanned_table_changes() {
    let dir = tempfile::tempdir().unwrap();
    let engine = demo_engine(dir.path(), 20_000).await;
    let session = engine.new_session();
    let state = session.state();
    let sql = "SELECT sum(amount) FROM cube.finance WHERE entity = $1";
    let plan = state.create_logical_plan(sql).await.unwrap();
    let reusable = ReusablePlan::<()>::try_new(&state, &plan)
        .unwrap()
        .expect("a plain query is kept");
    let beside = |entity: &'static str| {
        let reusable = &reusable;
        let state = &state;
        async move {
            let parameters = ParamValues::List(vec![ScalarValue::from(entity).into()]);
            let runnable = reusable.physical_plan(state, parameters).await.unwrap();
            runnable.beside.expect("the plan is kept")
        }
    };
    let first = beside("DE").await;
    assert!(std::sync::Arc::ptr_eq(&first, &beside("DE").await));
    assert!(!std::sync::Arc::ptr_eq(&first, &beside("FR").await));
    session
        .sql("INSERT INTO cube.finance VALUES ('Budget', '2025_03', 'DE', '4000', 'P0001', 'EUR', 1)")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert!(!std::sync::Arc::ptr_eq(&first, &beside("DE").await));
}

/// A query whose tile is already stored when it is planned (another session computed it) is
/// kept all the same and served from the tile on every run: it used to be planned again for
/// every run, since a plan holding a tile was never kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_that_found_its_tile_is_kept_and_serves_it() {
    let dir = tempfile::tempdir().unwrap();
    let engine = demo_engine(dir.path(), 20_000).await;
    let sql =
        "SELECT entity, sum(amount) AS total FROM cube.finance GROUP BY entity ORDER BY entity";
    let expected = crate::support::shown(&engine, sql).await;
    let state = engine.new_session().state();
    let plan = state.create_logical_plan(sql).await.unwrap();
    let reusable = ReusablePlan::<()>::try_new(&state, &plan)
        .unwrap()
        .expect("a plain query is kept");
    let mut kept = Vec::new();
    for _ in 0..2 {
        let runnable = reusable
            .physical_plan(&state, ParamValues::List(vec![]))
            .await
            .unwrap();
        let beside = runnable.beside.clone().expect("the plan is kept");
        let plan = runnable.into_plan().unwrap();
        let shown = displayable(plan.as_ref()).indent(true).to_string();
        assert!(shown.starts_with("TileExec: hit"), "{shown}");
        let batches = collect(plan, state.task_ctx()).await.unwrap();
        let answer = datafusion::arrow::util::pretty::pretty_format_batches(&batches)
            .unwrap()
            .to_string();
        assert_eq!(answer, expected);
        kept.push(beside);
    }
    assert!(std::sync::Arc::ptr_eq(&kept[0], &kept[1]));
}
