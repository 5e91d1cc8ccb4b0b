//! [`Labelled`]: a metric family of the `/metrics` registry, one metric per set of label
//! values (rows in per table, bad records per table and reason), that can also be read
//! back: the status line and the run summary sum its series. Clones share their series.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::{EncodeMetric, MetricEncoder};
use prometheus_client::metrics::{MetricType, TypedMetric};

use super::lock;

/// Metrics of kind `M`, one per set of values of the labels `names`.
#[derive(Debug, Clone)]
pub struct Labelled<M> {
    names: &'static [&'static str],
    series: Arc<Mutex<BTreeMap<Vec<String>, M>>>,
}

impl<M: Clone + Default> Labelled<M> {
    /// An empty family whose series carry the labels `names`.
    pub fn new(names: &'static [&'static str]) -> Self {
        Self {
            names,
            series: Arc::default(),
        }
    }

    /// The series with label values `values` (one per name), made on first use. Callers on
    /// a hot path keep the clone it returns.
    pub fn get(&self, values: &[&str]) -> M {
        debug_assert_eq!(values.len(), self.names.len());
        let key: Vec<String> = values.iter().map(|v| v.to_string()).collect();
        lock(&self.series).entry(key).or_default().clone()
    }

    /// Every series so far, by label values, in order.
    pub fn series(&self) -> Vec<(Vec<String>, M)> {
        lock(&self.series)
            .iter()
            .map(|(values, metric)| (values.clone(), metric.clone()))
            .collect()
    }
}

impl<M: TypedMetric> TypedMetric for Labelled<M> {
    const TYPE: MetricType = M::TYPE;
}

impl<M: EncodeMetric + TypedMetric> EncodeMetric for Labelled<M> {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        for (values, metric) in lock(&self.series).iter() {
            let labels: Vec<(&str, &str)> = self
                .names
                .iter()
                .copied()
                .zip(values.iter().map(String::as_str))
                .collect();
            metric.encode(encoder.encode_family(&labels)?)?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        M::TYPE
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::registry::Registry;

    use super::*;

    #[test]
    fn series_are_made_on_first_use_and_encoded_with_their_labels() {
        let family = Labelled::<Counter>::new(&["table", "reason"]);
        family.get(&["events", "json"]).inc();
        family.get(&["events", "json"]).inc();
        family.get(&["clicks", "avro"]).inc();
        let mut registry = Registry::default();
        registry.register("bad_records", "Bad records.", family.clone());
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains("bad_records_total{table=\"events\",reason=\"json\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("bad_records_total{table=\"clicks\",reason=\"avro\"} 1\n"),
            "{text}"
        );
        assert_eq!(family.series().len(), 2);
    }
}
