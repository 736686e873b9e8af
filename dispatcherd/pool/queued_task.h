#pragma once
// QueuedTask: a task message on its way from the pipeline to a worker, as the processors
// (delayer, blocker) and the pool hold it. Compact on purpose: the original JSON text plus
// the few fields main acts on, never a parsed JSON tree.

#include <cstdint>
#include <string>

#include "dispatcherd/loop/event_loop.h"
#include "dispatcherd/message.h"

namespace dispatcherd {

/// A task on its way to a worker: the message text plus what main read from it.
struct QueuedTask {
  std::string body;     ///< the message JSON text, as received
  std::string uuid;     ///< assigned or read (§2.3 step 4)
  std::string channel;  ///< "" when none
  std::string task;     ///< the `task` name
  double timeout = 0;   ///< seconds of run time before cancel; 0 = none
  std::uint64_t identity = 0;  ///< identity_hash() of (task, args, kwargs)
  OnDuplicate on_duplicate = OnDuplicate::Parallel;
  MonoTime received_at = 0;  ///< when main read it (for the latency histogram)
};

}  // namespace dispatcherd
