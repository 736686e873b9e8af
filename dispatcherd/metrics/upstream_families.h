#pragma once
// Upstream's three metric families (spec §10), registered with their exact names, help texts
// and (sic) counter type, so a scrape of our service is byte-identical to the Python one.

#include <functional>

#include "dispatcherd/metrics/metrics_registry.h"

namespace dispatcherd::metrics {

/// Where the values of upstream's families come from; each is read at render time.
struct UpstreamSources {
  /// `received_count`: every decoded, fully assembled message (§2.3 step 6).
  std::function<double()> messages_received;
  /// `control_count`: every control execution, unknown commands and binds included.
  std::function<double()> control_messages;
  /// Number of worker records in any state (it can go down despite the counter type).
  std::function<double()> worker_records;
};

/// Registers, in this order and before any family of ours:
/// `dispatcher_messages_received_total`, `dispatcher_control_messages_count_total` and
/// `dispatcher_worker_count_total`, all unlabelled counters filled from `sources`.
void register_upstream_families(Registry& registry, UpstreamSources sources);

}  // namespace dispatcherd::metrics
