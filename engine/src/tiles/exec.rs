//! [`TileExec`]: the operator at the root of a cached query's plan.

use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::Result;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::execution::{RecordBatchStream, SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::memory::MemoryStream;
use datafusion::physical_plan::metrics::{
    Count, ExecutionPlanMetricsSet, MetricBuilder, MetricsSet,
};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, Partitioning,
    PlanProperties,
};
use futures::{Stream, StreamExt, TryStreamExt};

use super::{Tile, TileCache, TileKey, TileSource};

/// The root of a cached query's plan. Either it holds the tile found when the query was
/// planned and serves it, or it holds the query's plan: when run, it serves the tile if one
/// was stored meanwhile, else runs the plan and stores its complete result as the tile.
///
/// `EXPLAIN` shows which (`TileExec: hit` or `TileExec: miss`); `EXPLAIN ANALYZE` counts
/// `tile_hits` and `tile_misses` of the run.
#[derive(Debug)]
pub struct TileExec {
    key: TileKey,
    cache: Arc<TileCache>,
    serves: Serves,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

#[derive(Debug)]
enum Serves {
    /// The tile found at planning, and where.
    Tile(Arc<Tile>, TileSource),
    /// The tile found when a kept plan was planned, held only while the cache holds it (see
    /// [`TileExec::to_keep`]).
    Kept(Weak<Tile>, TileSource),
    /// The query's plan, in one partition.
    Plan(Arc<dyn ExecutionPlan>),
}

impl TileExec {
    /// Serves `tile`, found in `source` under `key`.
    pub fn hit(key: TileKey, cache: Arc<TileCache>, tile: Arc<Tile>, source: TileSource) -> Self {
        let properties = PlanProperties::new(
            EquivalenceProperties::new(Arc::clone(tile.schema())),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Self::with(key, cache, Serves::Tile(tile, source), properties)
    }

    /// Runs `plan` unless a tile is stored under `key` by the time it runs, and stores its
    /// result under `key`.
    pub fn miss(key: TileKey, cache: Arc<TileCache>, plan: Arc<dyn ExecutionPlan>) -> Self {
        let plan = match plan.output_partitioning().partition_count() {
            1 => plan,
            _ => Arc::new(CoalescePartitionsExec::new(plan)) as _,
        };
        let properties = plan
            .properties()
            .as_ref()
            .clone()
            .with_partitioning(Partitioning::UnknownPartitioning(1));
        Self::with(key, cache, Serves::Plan(plan), properties)
    }

    fn with(
        key: TileKey,
        cache: Arc<TileCache>,
        serves: Serves,
        properties: PlanProperties,
    ) -> Self {
        Self {
            key,
            cache,
            serves,
            properties: Arc::new(properties),
            metrics: ExecutionPlanMetricsSet::new(),
        }
    }

    /// `plan` as a plan kept for reuse holds it: a tile found at planning is held weakly, so
    /// that it does not outlive its place in the cache.
    pub fn to_keep(plan: Arc<dyn ExecutionPlan>) -> Arc<dyn ExecutionPlan> {
        let Some(exec) = plan.downcast_ref::<Self>() else {
            return plan;
        };
        let Serves::Tile(tile, source) = &exec.serves else {
            return plan;
        };
        let serves = Serves::Kept(Arc::downgrade(tile), *source);
        Arc::new(Self::with(
            exec.key.clone(),
            Arc::clone(&exec.cache),
            serves,
            exec.properties.as_ref().clone(),
        ))
    }

    /// A kept `plan` ready for another run: `None` when it was planned with a tile the cache
    /// has dropped since (it must be planned again). A tile served this way keeps its query
    /// hot, as a lookup would.
    pub fn to_run(plan: &Arc<dyn ExecutionPlan>) -> Option<Arc<dyn ExecutionPlan>> {
        let Some(exec) = plan.downcast_ref::<Self>() else {
            return Some(Arc::clone(plan));
        };
        let Serves::Kept(tile, source) = &exec.serves else {
            return Some(Arc::clone(plan));
        };
        let tile = tile.upgrade()?;
        exec.cache.hot_tiles().served(&exec.key);
        Some(Arc::new(Self::hit(
            exec.key.clone(),
            Arc::clone(&exec.cache),
            tile,
            *source,
        )))
    }

    fn counter(&self, name: &'static str) -> Count {
        MetricBuilder::new(&self.metrics).global_counter(name)
    }
}

impl DisplayAs for TileExec {
    fn fmt_as(&self, _: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        match &self.serves {
            Serves::Kept(..) => write!(f, "TileExec: kept tile={}", self.key.short()),
            Serves::Tile(tile, source) => write!(
                f,
                "TileExec: hit tile={} in {}, rows={}",
                self.key.short(),
                match source {
                    TileSource::Memory => "memory",
                    TileSource::Shared => "redis",
                },
                tile.batches()
                    .iter()
                    .map(RecordBatch::num_rows)
                    .sum::<usize>()
            ),
            Serves::Plan(_) => write!(f, "TileExec: miss tile={}", self.key.short()),
        }
    }
}

impl ExecutionPlan for TileExec {
    fn name(&self) -> &str {
        "TileExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        match &self.serves {
            Serves::Tile(..) | Serves::Kept(..) => vec![],
            Serves::Plan(plan) => vec![plan],
        }
    }

    fn apply_expressions(
        &self,
        _: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(match (children.into_iter().next(), &self.serves) {
            (Some(plan), Serves::Plan(_)) => {
                Arc::new(Self::miss(self.key.clone(), Arc::clone(&self.cache), plan))
            }
            _ => self,
        })
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }

    fn execute(
        &self,
        _partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let schema = self.schema();
        let plan = match &self.serves {
            Serves::Tile(tile, _) => {
                self.counter("tile_hits").add(1);
                return tile_stream(tile);
            }
            Serves::Kept(..) => {
                return datafusion::common::internal_err!(
                    "a kept tile plan runs through TileExec::to_run"
                );
            }
            Serves::Plan(plan) => Arc::clone(plan),
        };
        let (key, cache) = (self.key.clone(), Arc::clone(&self.cache));
        let (hits, misses) = (self.counter("tile_hits"), self.counter("tile_misses"));
        let stream = futures::stream::once(async move {
            if let Some((tile, _)) = cache.get(&key).await
                && *tile.schema() == plan.schema()
            {
                hits.add(1);
                return tile_stream(&tile);
            }
            misses.add(1);
            let rows = plan.execute(0, context)?;
            Ok(Box::pin(Recording::new(rows, key, cache)) as SendableRecordBatchStream)
        })
        .try_flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }
}

fn tile_stream(tile: &Tile) -> Result<SendableRecordBatchStream> {
    Ok(Box::pin(MemoryStream::try_new(
        tile.batches().to_vec(),
        Arc::clone(tile.schema()),
        None,
    )?))
}

/// Passes a query's rows on and, once they all went through without error, stores them as
/// the tile (unless they are more than a tile may hold).
struct Recording {
    rows: SendableRecordBatchStream,
    key: TileKey,
    cache: Arc<TileCache>,
    kept: Option<Vec<RecordBatch>>,
    bytes: usize,
}

impl Recording {
    fn new(rows: SendableRecordBatchStream, key: TileKey, cache: Arc<TileCache>) -> Self {
        Self {
            rows,
            key,
            cache,
            kept: Some(Vec::new()),
            bytes: 0,
        }
    }
}

impl Stream for Recording {
    type Item = Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let polled = self.rows.poll_next_unpin(cx);
        match &polled {
            Poll::Ready(Some(Ok(batch))) => {
                self.bytes += batch.get_array_memory_size();
                if self.bytes as u64 > self.cache.max_tile_bytes() {
                    self.kept = None;
                } else if let Some(kept) = &mut self.kept {
                    kept.push(batch.clone());
                }
            }
            Poll::Ready(Some(Err(_))) => self.kept = None,
            Poll::Ready(None) => {
                if let Some(batches) = self.kept.take() {
                    let tile = Tile::new(self.rows.schema(), batches);
                    self.cache.put(self.key.clone(), tile);
                }
            }
            Poll::Pending => {}
        }
        polled
    }
}

impl RecordBatchStream for Recording {
    fn schema(&self) -> SchemaRef {
        self.rows.schema()
    }
}
