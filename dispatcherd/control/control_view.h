#pragma once
// What control commands may read and do. The Service implements this view; the command table
// (commands.h) is pure logic over it, so every command is unit-tested with a fake view.

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "dispatcherd/log.h"
#include "dispatcherd/result.h"

namespace dispatcherd {

/// The task filter of `running` and `cancel` (upstream-spec §4.4): for each of task, args,
/// kwargs and uuid whose filter value is truthy, the message's value must be equal.
struct TaskFilter {
  nlohmann::json task, args, kwargs, uuid;  ///< null = not filtered
  /// Builds a filter from control_data (other keys ignored).
  static TaskFilter from(const nlohmann::json& control_data);
  /// True when `message` (a task message object) passes.
  bool matches(const nlohmann::json& message) const;
  /// False when a message with this `task` name and `uuid` cannot pass, whatever its args
  /// and kwargs: lets a cancel skip parsing most of a long queue.
  bool may_match(std::string_view task_name, std::string_view task_uuid) const;
};

/// One listed message: its key ("worker-0", "blocked-1", "queued-0", "delayed-2") and the
/// message object as the service holds it (with uuid, and channel when it has one).
using ListedMessage = std::pair<std::string, nlohmann::json>;

/// The service as control commands see it. All calls happen on the event loop.
class ControlView {
 public:
  virtual ~ControlView() = default;
  /// Every held message in `running` order: workers (LRU order), blocked, queued, delayed.
  virtual std::vector<ListedMessage> messages() const = 0;
  /// Cancels every match: running → cancel signal; blocked/queued/delayed → removed.
  /// Returns what matched, as it was before removal.
  virtual std::vector<ListedMessage> cancel(const TaskFilter& filter) = 0;
  /// `workers` reply body.
  virtual nlohmann::json workers() const = 0;
  /// `producers` reply body.
  virtual nlohmann::json producers() const = 0;
  /// `metrics` reply body ({"enabled": false} or {"enabled": true, "status": {...}}).
  virtual nlohmann::json metrics() const = 0;
  /// `main` reply body.
  virtual nlohmann::json main_status() const = 0;
  /// `chunks` reply body.
  virtual nlohmann::json chunks() const = 0;
  /// `aio_tasks` reply body: the loop's activities and timers, {"name": {"done", "stack"}}.
  virtual nlohmann::json activities(int limit) const = 0;
  /// Sets the main process's log level. `level` is any Python logging number: the named
  /// levels, 0 (NOTSET: the service's start-up level applies again) or a non-standard value
  /// such as 15 (log::Level{15}). Returns the level this call set last time, log::Level{0}
  /// (NOTSET) on the first call, as upstream's `dispatcherd` logger reports it (§4.4).
  virtual log::Level set_log_level(log::Level level) = 0;
  /// Submits a task message through the pipeline (`run`); Error when no ControlProducer is
  /// configured or the message is refused.
  virtual Status submit(const nlohmann::json& message) = 0;
};

}  // namespace dispatcherd
