#pragma once
// Running one command task inside a worker (DESIGN §2 "command tasks", §3 "child hygiene").
//
// Process layout, per task:
//
//   worker ── keeper (leader of a new process group) ── command (execvp'd) ── its children
//
// The keeper is a tiny forked helper that never execs. It exists because PR_SET_PDEATHSIG
// only reaches a direct child: when main SIGKILLs the worker (cancel_grace escalation), the
// command itself would die but anything it started (`sleep 100 &`) would live on. The keeper
// gets a signal when the worker dies and SIGKILLs the whole group; the command has
// PDEATHSIG(SIGKILL) tied to the keeper, so no member outlives a dead worker.
//
// Group membership is the boundary: a descendant that leaves the group (setsid, setpgid, a
// daemonizing double fork into its own session) is the command's business and is not killed.
// Members left behind when the command exits (background jobs it did not wait for) are
// SIGKILLed by the keeper: a task does not leave processes running after it ended.

#include <nlohmann/json.hpp>
#include <string>

#include "dispatcherd/config.h"
#include "dispatcherd/task.h"

namespace dispatcherd::worker {

/// Exit status the command reports when it could not be started at all (chdir or exec failed,
/// or fork failed in the keeper); the reason is written to its output, so it is in the tail.
constexpr int kCommandStartFailedStatus = 127;

/// Runs command task `name` as configured by `task` for the message of `ctx`, and waits for it.
///
/// argv comes from expand_command(task, ctx.kwargs()); the whole message (ctx.message(), as
/// JSON) is written to the command's stdin without ever blocking the worker, then stdin is
/// closed (a command that never reads it is fine); stdout and stderr share one pipe of which
/// the last `task.output_tail_bytes` bytes are kept. The environment is the worker's plus
/// `task.env`; the working directory is `task.cwd` when set. No shell is involved.
///
/// Must run with SIGUSR1 handled by the worker's cancel handler (it sets ctx's cancel flag);
/// SIGUSR1 is blocked except while waiting, so a cancel is never missed. On cancel the
/// command's process group gets SIGTERM, then SIGKILL after `kill_grace_seconds` or as soon as
/// another signal interrupts the wait (main's second cancel), whichever is first.
///
/// Returns {"exit_code": 0} when the command exits 0. Throws TaskCancelled when cancelled
/// (whatever the command's status), std::invalid_argument when the kwargs do not fit the
/// template, and std::runtime_error "command exited with status N; output tail: ..." /
/// "command killed by signal N; output tail: ..." otherwise (the tail part only when there
/// was output; invalid UTF-8 in it is replaced).
nlohmann::json run_command_task(const std::string& name, const CommandTaskConfig& task,
                                const TaskContext& ctx, double kill_grace_seconds);

}  // namespace dispatcherd::worker
