#include "dispatcherd/processors/blocker.h"

#include <algorithm>

#include "dispatcherd/log.h"

namespace dispatcherd {

Blocker::Blocker(std::size_t max_held) : max_held_(max_held) {}

void Blocker::activated(std::uint64_t identity) {
  // An identity with an active task cannot release anything until it is inactive again.
  if (++active_counts_[identity] == 1) releasable_.erase(identity);
}

void Blocker::deactivated(std::uint64_t identity) {
  auto it = active_counts_.find(identity);
  DISPATCHERD_ASSERT(it != active_counts_.end() && it->second > 0);
  if (--it->second != 0) return;
  active_counts_.erase(it);
  if (held_counts_.contains(identity)) releasable_.insert(identity);
}

std::size_t Blocker::active_count(std::uint64_t identity) const {
  auto it = active_counts_.find(identity);
  return it == active_counts_.end() ? 0 : it->second;
}

std::size_t Blocker::held_count(std::uint64_t identity) const {
  auto it = held_counts_.find(identity);
  return it == held_counts_.end() ? 0 : it->second;
}

Blocker::Decision Blocker::admit(QueuedTask& t) {
  const bool active = active_count(t.identity) > 0;
  switch (t.on_duplicate) {
    case OnDuplicate::Parallel:
      // Unknown policies were already mapped to Parallel (with a warning) when read.
      return Decision::Pass;
    case OnDuplicate::Serial:
      // The held list is deliberately not consulted (§8.1): every duplicate eventually
      // runs, one at a time.
      return active ? hold(t) : Decision::Pass;
    case OnDuplicate::Discard:
      if (!active && held_count(t.identity) == 0) return Decision::Pass;
      break;
    case OnDuplicate::QueueOne:
      // At most one running plus one waiting.
      if (held_count(t.identity) == 0) return active ? hold(t) : Decision::Pass;
      break;
  }
  ++discarded_;
  // Per-task lines are DEBUG (DESIGN §8); the text is upstream's.
  LOG_DEBUG("Discarding task because it is already running, uuid=" << t.uuid()
                                                                   << " task=" << t.task());
  return Decision::Discard;
}

Blocker::Decision Blocker::hold(QueuedTask& t) {
  if (held_.size() >= max_held_) {
    ++overflow_;
    // One WARNING per burst: the rest of a burst would flood the log with the same line.
    if (!overflow_warned_) {
      overflow_warned_ = true;
      LOG_WARNING("Blocked task list full (max_blocked_tasks="
                  << max_held_ << "), dropping task uuid=" << t.uuid() << " task=" << t.task()
                  << ", overflow_count=" << overflow_);
    } else {
      LOG_DEBUG("Blocked task list full, dropping task uuid=" << t.uuid() << " task=" << t.task()
                                                              << ", overflow_count=" << overflow_);
    }
    return Decision::Discard;
  }
  overflow_warned_ = false;
  const std::uint64_t seq = next_seq_++;
  held_index_.emplace(t.identity, seq);
  ++held_counts_[t.identity];
  // Holding only happens while a duplicate is active, so the identity is not releasable.
  held_.emplace(seq, std::move(t));
  return Decision::Hold;
}

void Blocker::forget_held(std::uint64_t identity, std::uint64_t seq) {
  held_index_.erase({identity, seq});
  auto it = held_counts_.find(identity);
  DISPATCHERD_ASSERT(it != held_counts_.end() && it->second > 0);
  if (--it->second == 0) {
    held_counts_.erase(it);
    releasable_.erase(identity);
  }
}

std::vector<QueuedTask> Blocker::release() {
  std::vector<QueuedTask> out;
  if (releasable_.empty()) return out;
  // Each releasable identity releases exactly its oldest held task: no duplicate is active,
  // and the second held duplicate would find the first already released in this pass.
  std::vector<std::uint64_t> seqs;
  seqs.reserve(releasable_.size());
  for (std::uint64_t identity : releasable_) {
    ++release_scanned_;
    auto it = held_index_.lower_bound({identity, 0});
    DISPATCHERD_ASSERT(it != held_index_.end() && it->first == identity);
    seqs.push_back(it->second);
  }
  // Sequence order is held order, which is the order the pass would meet them in.
  std::sort(seqs.begin(), seqs.end());
  out.reserve(seqs.size());
  for (std::uint64_t seq : seqs) {
    auto node = held_.extract(seq);
    DISPATCHERD_ASSERT(!node.empty());
    // An identity that keeps held tasks stays releasable until the caller activates the
    // released one; if it never does, the next pass releases the next duplicate, as the
    // rule says (no duplicate active).
    forget_held(node.mapped().identity, seq);
    out.push_back(std::move(node.mapped()));
  }
  return out;
}

std::vector<QueuedTask> Blocker::remove_if(const std::function<bool(const QueuedTask&)>& match) {
  std::vector<QueuedTask> out;
  for (auto it = held_.begin(); it != held_.end();) {
    if (!match(it->second)) {
      ++it;
      continue;
    }
    forget_held(it->second.identity, it->first);
    out.push_back(std::move(it->second));
    it = held_.erase(it);
  }
  return out;
}

void Blocker::for_each_held(const std::function<void(const QueuedTask&)>& visit) const {
  for (const auto& entry : held_) visit(entry.second);
}

BlockerCounters Blocker::counters() const {
  return BlockerCounters{.discarded = discarded_, .overflow = overflow_, .held_now = held_.size()};
}

}  // namespace dispatcherd
