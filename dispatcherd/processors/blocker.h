#pragma once
// Blocker: the `on_duplicate` processor (upstream-spec §8.1). Pure logic: no fds, no clock.
//
// A message's identity is the 64-bit identity_hash() of (task, args, kwargs). Two messages
// are duplicates when their identities are equal. Distinct (task, args, kwargs) triples
// collide with probability ~2^-64 per pair; a collision would make two unrelated tasks
// block each other (never run the wrong task), which we accept instead of keeping and
// comparing full JSON values for every active task.
//
// The Blocker does not see the pool. Its owner reports which identities are "active"
// (queued in the pool's FIFO or running on a worker) with activated()/deactivated(), and
// calls release() at the start of every drain (§7.4). Everything is a hash lookup: the
// active and held identities are counted in hash maps, and release() only visits the
// identities that can release something (held, and no longer active), so a pass over a
// large held list where nothing can move costs nothing.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "dispatcherd/pool/queued_task.h"

namespace dispatcherd {

/// Blocker counters (discard_count of §7.9 and ours).
struct BlockerCounters {
  std::uint64_t discarded = 0;  ///< discarded by the §8.1 rules (upstream's discard_count)
  std::uint64_t overflow = 0;   ///< would have been held, dropped because the held list is full
  std::size_t held_now = 0;     ///< messages currently held (listed as blocked-<i>)
};

/// Holds and discards duplicate tasks by their `on_duplicate` policy (§8.1).
class Blocker {
 public:
  /// What admit() decided.
  enum class Decision {
    Pass,     ///< not blocked: the caller forwards it to the pool (and calls activated())
    Hold,     ///< kept in the held list (the task was moved into the Blocker)
    Discard,  ///< dropped; counted in `discarded` (rule) or `overflow` (held list full)
  };

  /// `max_held` bounds the held list; when it is full a task that would be held is dropped
  /// and counted in `overflow` instead (DESIGN §8). 0 means nothing can ever be held.
  explicit Blocker(std::size_t max_held);

  /// Records that a task with this identity became active (queued in the pool or started
  /// on a worker; a queued task that moves to a worker stays active, no second call).
  void activated(std::uint64_t identity);
  /// Records that an active task left: finished, or removed from the queue (cancel, drop).
  /// Every call must match an earlier activated() (asserted: a mismatch is a wiring bug).
  void deactivated(std::uint64_t identity);
  /// Number of active tasks with this identity.
  std::size_t active_count(std::uint64_t identity) const;

  /// Applies the §8.1 rule of `t.on_duplicate` to an incoming task. On Hold, `t` has been
  /// moved from; on Pass and Discard it is left as it was.
  Decision admit(QueuedTask& t);

  /// The release pass (first step of every drain, §7.4): in held order, a held task is
  /// released when no duplicate is active and no duplicate was already released in this
  /// pass. Returns the released tasks in held order; the caller appends them to the end of
  /// the pool's FIFO and calls activated() for each. Costs nothing when no held identity
  /// became inactive since the last pass.
  std::vector<QueuedTask> release();

  /// Removes every held task that `match` accepts (cancel, §4.4) and returns them in held
  /// order. Their identities stay active/inactive as they were.
  std::vector<QueuedTask> remove_if(const std::function<bool(const QueuedTask&)>& match);

  /// Calls `visit` for each held task in held order (`running` lists them as blocked-<i>).
  void for_each_held(const std::function<void(const QueuedTask&)>& visit) const;
  /// Number of held tasks.
  std::size_t held_size() const { return held_.size(); }
  /// Number of held tasks with this identity.
  std::size_t held_count(std::uint64_t identity) const;

  /// Current counters.
  BlockerCounters counters() const;

  /// For tests: identities examined by all release() passes so far. Stays unchanged by a
  /// pass that had nothing it could release, however many tasks are held.
  std::uint64_t release_scanned() const { return release_scanned_; }

 private:
  Decision hold(QueuedTask& t);
  void forget_held(std::uint64_t identity, std::uint64_t seq);

  std::size_t max_held_;
  /// Held tasks by arrival sequence: iteration order is held order.
  std::map<std::uint64_t, QueuedTask> held_;
  /// (identity, seq) of each held task, so the oldest held task of an identity is one
  /// lower_bound away.
  std::set<std::pair<std::uint64_t, std::uint64_t>> held_index_;
  /// Held tasks per identity (identities with none have no entry).
  std::unordered_map<std::uint64_t, std::size_t> held_counts_;
  /// Active tasks per identity (identities with none have no entry).
  std::unordered_map<std::uint64_t, std::size_t> active_counts_;
  /// Identities that have held tasks and no active task: exactly the ones release() can
  /// release from. Kept up to date by every change, so release() never scans for them.
  std::unordered_set<std::uint64_t> releasable_;
  std::uint64_t next_seq_ = 0;
  std::uint64_t discarded_ = 0;
  std::uint64_t overflow_ = 0;
  std::uint64_t release_scanned_ = 0;
  /// True while the held list has stayed full since the last overflow warning, so a burst
  /// of overflows logs one WARNING and the rest at DEBUG.
  bool overflow_warned_ = false;
};

}  // namespace dispatcherd
