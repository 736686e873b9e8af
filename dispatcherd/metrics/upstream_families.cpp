#include "dispatcherd/metrics/upstream_families.h"

#include <utility>

#include "dispatcherd/log.h"

namespace dispatcherd::metrics {

void register_upstream_families(Registry& registry, UpstreamSources sources) {
  DISPATCHERD_ASSERT(sources.messages_received && sources.control_messages &&
                     sources.worker_records);
  // The help texts are upstream's, typos and trailing periods included.
  registry.collect_value("dispatcher_messages_received_total",
                         "Number of messages received by dispatchermain", MetricType::Counter,
                         std::move(sources.messages_received));
  registry.collect_value("dispatcher_control_messages_count_total",
                         "Number of control messages received.", MetricType::Counter,
                         std::move(sources.control_messages));
  registry.collect_value("dispatcher_worker_count_total", "Number of workers running.",
                         MetricType::Counter, std::move(sources.worker_records));
}

}  // namespace dispatcherd::metrics
