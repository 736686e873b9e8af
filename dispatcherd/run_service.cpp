// run_service(): the whole start-up and shutdown sequence, shared by the `dispatcherd` binary
// and applications that link libdispatcherd (library mode).
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <memory>

#include "dispatcherd/config.h"
#include "dispatcherd/log.h"
#include "dispatcherd/loop/event_loop.h"
#include "dispatcherd/pool/process_title.h"
#include "dispatcherd/pool/zygote.h"
#include "dispatcherd/service.h"
#include "dispatcherd/systemd_notify.h"
#include "dispatcherd/task.h"
#include "dispatcherd/task_libraries.h"
#include "dispatcherd/worker/worker_loop.h"

#ifndef DISPATCHERD_VERSION
#define DISPATCHERD_VERSION "0.1.0"
#endif

namespace dispatcherd {

namespace {

struct Options {
  std::string config_path;
  std::string log_level;
  std::string log_format;
  bool check_config = false;
  bool version = false;
  bool list_tasks = false;
};

// Parses the command line; returns an exit code when the program should stop here.
std::optional<int> parse_args(int argc, char** argv, Options& opt) {
  CLI::App app{"dispatcherd - run background tasks received over Postgres LISTEN/NOTIFY"};
  app.add_option("--config", opt.config_path,
                 "config file (version 2); default: $DISPATCHERD_CONFIG_FILE or dispatcher.yml");
  app.add_option("--log-level", opt.log_level, "DEBUG, INFO, WARNING, ERROR or CRITICAL")
      ->check(CLI::IsMember({"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}, CLI::ignore_case));
  app.add_option("--log-format", opt.log_format, "text or json (default: extensions.log_format)")
      ->check(CLI::IsMember({"text", "json"}));
  app.add_flag("--check-config", opt.check_config, "validate the config file and exit");
  app.add_flag("--list-tasks", opt.list_tasks, "print the registered task names and exit");
  app.add_flag("--version", opt.version, "print the version and exit");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }
  return std::nullopt;
}

// True when the user named a config file (flag or environment), as opposed to the default.
bool config_named(const std::string& cli_path) {
  const char* env = std::getenv("DISPATCHERD_CONFIG_FILE");
  return !cli_path.empty() || (env != nullptr && *env != '\0');
}

void print_task_names() {
  for (const auto& name : registered_task_names()) std::printf("%s\n", name.c_str());
}

}  // namespace

int run_service(int argc, char** argv) {
  Options opt;
  if (auto rc = parse_args(argc, argv, opt)) return *rc;
  // Before anything forks: workers inherit the claimed area and show their task in ps.
  process_title::init(argc, argv);
  if (opt.version) {
    std::printf("dispatcherd %s\n", DISPATCHERD_VERSION);
    return 0;
  }
  // --list-tasks and --check-config print their answer on stdout; keep log lines off it.
  if (opt.list_tasks || opt.check_config) log::set_fd(2);

  std::string path = resolve_config_path(opt.config_path);
  // --list-tasks needs a config only for its task libraries: without one (none named and no
  // dispatcher.yml here) it lists what this binary registered itself.
  if (opt.list_tasks && !config_named(opt.config_path) && !std::filesystem::exists(path)) {
    print_task_names();
    return 0;
  }
  // The service checks the pg_notify conninfo with libpq when it starts that broker (see
  // Service::start); --check-config checks everything now.
  auto loaded =
      load_config(path, opt.check_config ? ConninfoCheck::AtLoad : ConninfoCheck::Deferred);
  if (!loaded) {
    std::fprintf(stderr, "%s\n", loaded.error().message.c_str());
    return 1;
  }
  Config config = std::move(loaded).value();
  apply_conninfo_override(config);
  for (const auto& w : config.warnings) std::fprintf(stderr, "%s\n", w.c_str());

  std::string format = opt.log_format.empty() ? config.extensions.log_format : opt.log_format;
  log::set_format(format == "json" ? log::Format::Json : log::Format::Text);
  // --log-level wins at start; the file's extensions.log_level applies otherwise and on SIGHUP.
  if (!opt.log_level.empty())
    log::set_level(*log::parse_level(opt.log_level));
  else if (config.extensions.log_level)
    log::set_level(*log::parse_level(*config.extensions.log_level));

  // Task libraries load while this process is still single-threaded and before the zygote
  // forks, so every worker inherits their tasks. They stay loaded until the process exits.
  auto libraries = load_task_libraries(config.extensions.task_libraries, config.path);
  if (!libraries) {
    std::fprintf(stderr, "dispatcherd: %s\n", libraries.error().message.c_str());
    return 1;
  }
  if (opt.list_tasks) {
    print_task_names();
    return 0;
  }
  if (opt.check_config) {
    std::printf("%s: OK\n", config.path.c_str());
    return 0;
  }

  ::signal(SIGPIPE, SIG_IGN);
  LOG_INFO("Using config from file " << config.path);
  for (const auto& lib : *libraries) LOG_INFO("Loaded task library " << lib.path);

  // SIGHUP and set_log_level change the level in main; workers must follow.
  log::share_level_with_children();
  // Block the signals the loop reads before anything forks, then fork the zygote while main
  // is still small: workers are forked from it, never from main.
  EventLoop loop;
  // The lambda runs in the zygote's copy of this process, where `config` stays as loaded.
  Zygote zygote([&config](int in_fd, int out_fd, int worker_id) {
    WorkerSettings s;
    s.worker_id = worker_id;
    s.idle_timeout = config.worker.idle_timeout;
    s.main_pid = ::getppid();
    s.command_tasks = &config.extensions.tasks;
    // Half the grace: the worker kills a stubborn command itself and reports a cancel before
    // main would SIGKILL the whole worker.
    s.command_kill_grace = config.extensions.cancel_grace_seconds / 2;
    return run_worker_loop(in_fd, out_fd, s);
  });
  zygote.attach(loop);

  Service service(loop, config, zygote);
  if (auto st = service.listen(); !st) {
    std::fprintf(stderr, "dispatcherd: %s\n", st.error().message.c_str());
    return 1;
  }
  bool stopping = false;
  auto stop = [&] {
    if (stopping) {
      LOG_WARNING("second exit signal while stopping; still waiting for workers");
      return;
    }
    stopping = true;
    sd_notify("STOPPING=1");
    service.stop([&] { loop.stop(); });
  };
  int exit_code = 0;
  service.on_fatal([&](const Error& e) {
    std::fprintf(stderr, "%s\n", e.message.c_str());
    exit_code = 1;
    stop();
  });
  service.on_ready([] { sd_notify("READY=1"); });
  loop.on_signal(SIGTERM, [&](const signalfd_siginfo&) { stop(); });
  loop.on_signal(SIGINT, [&](const signalfd_siginfo&) { stop(); });
  loop.on_signal(SIGCHLD, [&](const signalfd_siginfo&) {
    // Main's only direct child is the zygote (it reaps the workers); one path reaps all.
    int status;
    pid_t pid;
    while ((pid = ::waitpid(-1, &status, WNOHANG)) > 0) {
      if (pid == zygote.pid() && !stopping) zygote.zygote_died(status);
    }
  });
  loop.on_signal(SIGHUP, [&](const signalfd_siginfo&) {
    auto fresh = load_config(config.path);
    if (!fresh) {
      LOG_ERROR("SIGHUP: config not reloaded: " << fresh.error().message);
      return;
    }
    sd_notify("RELOADING=1");
    if (fresh->extensions.log_level) {
      // Logged under whichever of the two levels is more verbose, so the change is seen.
      const log::Level old_level = log::level(),
                       new_level = *log::parse_level(*fresh->extensions.log_level);
      auto note = [&] {
        LOG_INFO("SIGHUP: log level " << log::level_name(old_level) << " -> "
                                      << log::level_name(new_level));
      };
      if (new_level > old_level) note();
      log::set_level(new_level);
      if (new_level <= old_level) note();
    }
    service.reload(*fresh);
    sd_notify("READY=1");
    LOG_INFO("SIGHUP: reloaded log level and pool sizes from " << config.path);
  });
  loop.every_turn([] { log::flush_pending(); });

  service.start();  // READY=1 once every broker started (on_ready above)
  start_watchdog(loop);
  loop.run();
  LOG_INFO("dispatcherd stopped");
  log::flush_pending();
  return exit_code;
}

}  // namespace dispatcherd
