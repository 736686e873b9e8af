#pragma once
// Runs the built `dispatcherd` binary for end-to-end tests: writes a config into a private
// temp dir, starts the process with its output in a log file, and talks to it over Postgres
// the way any client would (pg_notify to publish, a reply channel for control commands).

#include <sys/types.h>

#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace dispatcherd::testing {

/// A dispatcherd process under test. The destructor kills it (and its process tree) if the
/// test did not stop it.
class ServiceProcess {
 public:
  /// `config_yaml` may contain {DSN} and {DIR} placeholders: the test cluster's conninfo and
  /// this process's private temp dir.
  explicit ServiceProcess(std::string config_yaml, std::vector<std::string> extra_args = {},
                          std::vector<std::string> extra_env = {});
  ~ServiceProcess();
  ServiceProcess(const ServiceProcess&) = delete;
  ServiceProcess& operator=(const ServiceProcess&) = delete;

  /// Runs `argv_prefix` (a program and its first arguments) instead of the built dispatcherd;
  /// "--config FILE --log-level DEBUG" and the extra args still follow. Call before start().
  void set_command(std::vector<std::string> argv_prefix) { command_ = std::move(argv_prefix); }
  /// Starts without "--log-level DEBUG", so that the config's extensions.log_level (or the
  /// default) applies. Call before start().
  void omit_log_level_flag() { log_level_flag_ = false; }
  /// Starts the binary; false when it could not be executed.
  bool start();
  /// Waits until `needle` appears in the log; false after `timeout` seconds.
  bool wait_for_log(const std::string& needle, double timeout = 20) const;
  /// The whole log so far.
  std::string log() const;
  /// Sends `sig` to the main process.
  void signal(int sig) const;
  /// Waits for the main process to exit; its wait status, or nullopt after `timeout`.
  std::optional<int> wait_exit(double timeout);
  /// The main process's pid.
  pid_t pid() const { return pid_; }
  /// The private temp dir ({DIR}).
  const std::string& dir() const { return dir_; }

 private:
  std::string config_;
  std::vector<std::string> args_, env_;
  std::vector<std::string> command_;  // empty: {DISPATCHERD_BIN}
  std::string dir_;
  pid_t pid_ = -1;
  bool log_level_flag_ = true;
  bool exited_ = false;
};

/// Publishes `payload` on `channel` with SELECT pg_notify (one autocommit statement).
void pg_notify(const std::string& channel, const std::string& payload);
/// Publishes every payload on `channel`, `per_statement` per SQL statement.
void pg_notify_many(const std::string& channel, const std::vector<std::string>& payloads,
                    std::size_t per_statement = 100);

/// Sends a control command over pg_notify to `channel` and waits for `expected` replies on a
/// fresh reply channel (upstream-spec §4.2). Returns the replies that came within `timeout`.
std::vector<nlohmann::json> pg_control(const std::string& channel, const std::string& command,
                                       const nlohmann::json& data = nlohmann::json::object(),
                                       std::size_t expected = 1, double timeout = 5);

/// Pids of every live descendant of `root` (from /proc).
std::set<pid_t> descendants(pid_t root);
/// True when `pid` exists and is not a zombie.
bool process_alive(pid_t pid);
/// Private (not shared) memory of `pid` in kB: Private_Clean + Private_Dirty of smaps_rollup.
long private_kb(pid_t pid);
/// True in a sanitizer build: AddressSanitizer's shadow memory and quarantine inflate private
/// memory by orders of magnitude (memory-bound assertions mean nothing there), and the -O0
/// instrumented service drains a backlog tens of times slower.
constexpr bool sanitizer_build() {
#if defined(__SANITIZE_ADDRESS__)
  return true;
#else
  return false;
#endif
}
/// Polls `cond` every 20 ms until true or `timeout` seconds pass.
bool eventually(const std::function<bool()>& cond, double timeout);
/// Lines of a text file.
std::vector<std::string> read_lines(const std::string& path);
/// Contents of a small /proc file, "" when the process is gone. read(2), not an ifstream: when
/// the process exits between open and read, read fails with ESRCH, and libstdc++'s filebuf
/// throws that out of istreambuf_iterator (std::terminate in a test).
std::string read_proc_file(const std::string& path);

}  // namespace dispatcherd::testing
