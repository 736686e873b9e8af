#pragma once
// The built-in tasks, registered under "dispatcherd.builtin.*" at static-init time:
//   noop       → null
//   sleep      → sleeps args[0] or kwargs.seconds seconds (cancel-aware; kwargs.ignore_cancel
//                keeps sleeping through cancels, to test SIGKILL escalation)
//   echo       → {"args": args, "kwargs": kwargs}
//   fail       → throws kwargs.message (default "fail task failed")
//   record     → appends "<uuid>\n" to kwargs.path with one write(2) on an O_APPEND fd
//   crash      → abort()
//   exit       → _exit(kwargs.code, default 3)
//   self_check → the pg_notify broker's health-check message (upstream-spec §3.1.6)

#include <string>
#include <string_view>

#include "dispatcherd/task.h"

namespace dispatcherd::worker {

/// Registry name of the self-check task. Messages with "self_check": true run it whatever
/// their `task` says (upstream's is the Python string `lambda: "broker_..."`). Referencing
/// it from the worker loop also keeps this file's static registrations linked in.
extern const char kSelfCheckTaskName[];

/// The result of a self-check message: the broker id quoted in its `task` string
/// (`lambda: "broker_x"` → "broker_x"), or the whole string when it has no quotes.
std::string self_check_result(std::string_view task);

/// Sleeps `seconds` (≥ 0) in a way a cancel interrupts promptly: SIGUSR1 is blocked while the
/// flag is checked and unblocked atomically by ppoll, so a cancel cannot slip in between.
/// Throws TaskCancelled when `ctx` is cancelled, unless `ignore_cancel`.
void cancellable_sleep(const TaskContext& ctx, double seconds, bool ignore_cancel = false);

}  // namespace dispatcherd::worker
