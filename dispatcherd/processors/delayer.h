#pragma once
// Delayer: messages with a `delay` wait here until they are due (upstream-spec §8.2).
// Pure logic: no fds, no clock; the owner passes the time in and arms one loop timer at
// next_due().
//
// Both task messages and control requests can be delayed (§4.1). A control request is held
// in the same QueuedTask shape (body, uuid, channel; no task name or identity) and flagged,
// so one ordered set and one timer serve both.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <utility>
#include <vector>

#include "dispatcherd/pool/queued_task.h"

namespace dispatcherd {

/// One delayed message.
struct Delayed {
  QueuedTask message;       ///< the task, or the control request (body, uuid, channel)
  double due = 0;           ///< when it runs (loop clock: received_at + delay)
  bool is_control = false;  ///< a control request; when it runs its reply is dropped (§8.2)
};

/// Delayer counters.
struct DelayerCounters {
  std::uint64_t overflow = 0;   ///< messages refused because the delayed set was full
  std::size_t delayed_now = 0;  ///< messages waiting (listed as delayed-<i>)
};

/// The set of delayed messages, ordered by due time, then arrival.
class Delayer {
 public:
  /// `max_delayed` bounds the set; add() refuses (and counts) messages beyond it
  /// (DESIGN §8). 0 means nothing can be delayed.
  explicit Delayer(std::size_t max_delayed);

  /// Keeps `message` until `due` (must not be NaN). Returns false, counts `overflow` and logs
  /// when the set is full; the message is then dropped. O(log n).
  bool add(QueuedTask message, double due, bool is_control = false);

  /// The earliest due time, nullopt when empty: where the owner arms its timer.
  std::optional<double> next_due() const;

  /// Removes and returns every message with due <= now, in due order (ties in arrival
  /// order). O(k log n) for k messages taken.
  std::vector<Delayed> take_due(double now);

  /// Removes every message `match` accepts (cancel, §4.4) and returns them in due order;
  /// they will never run.
  std::vector<Delayed> remove_if(const std::function<bool(const Delayed&)>& match);

  /// Calls `visit` for each message in due order (`running` lists them as delayed-<i>).
  void for_each(const std::function<void(const Delayed&)>& visit) const;

  /// Removes and returns everything in due order, at shutdown. The caller logs each one
  /// ("Abandoning delayed task (due to shutdown) to run in D, message=...").
  std::vector<Delayed> abandon_all();

  /// Number of messages waiting.
  std::size_t size() const { return delayed_.size(); }
  /// True when nothing waits.
  bool empty() const { return delayed_.empty(); }
  /// Current counters.
  DelayerCounters counters() const;

 private:
  /// (due, arrival sequence): a total order, so equal due times keep arrival order.
  using Key = std::pair<double, std::uint64_t>;

  std::size_t max_delayed_;
  std::map<Key, Delayed> delayed_;
  std::uint64_t next_seq_ = 0;
  std::uint64_t overflow_ = 0;
  /// True while the set has stayed full since the last overflow warning, so a burst of
  /// overflows logs one WARNING and the rest at DEBUG.
  bool overflow_warned_ = false;
};

}  // namespace dispatcherd
