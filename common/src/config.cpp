// Loads upstream's version-2 dispatcher.yml (upstream-spec §6) and our `extensions:` section.
// Upstream splats each section into Python constructors, so unknown keys there are errors;
// unknown top-level keys are ignored (with a warning here). All yaml-cpp and internal
// exceptions are caught in load_config_text and become an Error.

#include "dispatcherd/config.h"

#include <fcntl.h>
#include <unistd.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <string_view>
#include <system_error>

#include "config_yaml.h"

namespace dispatcherd {
namespace {

using config_detail::ConfigError;
using config_detail::Ctx;
using config_detail::excerpt;
using config_detail::Field;
using config_detail::Kind;
using config_detail::kind_of;

constexpr const char* kVersionRule = "Current config version is 2, config version must match this";
constexpr std::size_t kMaxConfigBytes = 16u << 20;

void load_pool(const Ctx& c, const Field& section, PoolConfig& p) {
  std::optional<Field> min_f;
  for (const Field& f : c.fields(section.value, section.path,
                                 {"min_workers", "max_workers", "scaledown_wait",
                                  "scaledown_interval", "worker_stop_wait", "worker_removal_wait",
                                  "worker_max_lifetime_seconds", "results_read_timeout"})) {
    if (f.key == "min_workers") {
      p.min_workers = static_cast<int>(c.get_int(f, 0, INT_MAX));
      min_f = f;
    } else if (f.key == "max_workers") {
      if (kind_of(f.value) == Kind::Null)
        p.max_workers.reset();
      else
        p.max_workers = static_cast<int>(c.get_int(f, 1, INT_MAX));
    } else if (f.key == "scaledown_wait") {
      p.scaledown_wait = c.get_number(f, 0);
    } else if (f.key == "scaledown_interval") {
      p.scaledown_interval = c.get_number(f, 0, true);  // 0 would make the pool loop spin
    } else if (f.key == "worker_stop_wait") {
      p.worker_stop_wait = c.get_number(f, 0);
    } else if (f.key == "worker_removal_wait") {
      p.worker_removal_wait = c.get_number(f, 0);
    } else if (f.key == "worker_max_lifetime_seconds") {
      p.worker_max_lifetime_seconds = c.get_opt_number(f, 0, true);
    } else {  // results_read_timeout
      (void)c.get_opt_number(f, 0);
      c.warn(f.key_node.Mark(), f.path + " only tunes the Python results queue reader; ignored");
    }
  }
  // Upstream accepts this and min wins (§7.3); likely a mistake, so say so.
  if (min_f && p.max_workers && p.min_workers > *p.max_workers)
    c.warn(min_f->value.Mark(), "service.pool_kwargs.min_workers (" +
                                    std::to_string(p.min_workers) + ") exceeds max_workers (" +
                                    std::to_string(*p.max_workers) + "); min_workers wins");
}

void load_service(const Ctx& c, const Field& section, Config& cfg) {
  std::string manager = "ForkServerManager";
  std::optional<Field> preload;
  for (const Field& f : c.fields(section.value, "service",
                                 {"pool_kwargs", "main_kwargs", "metrics_kwargs",
                                  "process_manager_cls", "process_manager_kwargs"})) {
    if (f.key == "pool_kwargs") {
      load_pool(c, f, cfg.pool);
    } else if (f.key == "main_kwargs") {
      for (const Field& m :
           c.fields(f.value, f.path, {"node_id", "chunk_message_timeout_seconds"})) {
        if (m.key == "node_id")
          cfg.main.node_id = c.get_opt_string(m);
        else
          cfg.main.chunk_message_timeout_seconds = c.get_number(m, 0, true);
      }
    } else if (f.key == "metrics_kwargs") {
      // Upstream: present and not null enables the server, so `metrics_kwargs: {}` does.
      cfg.metrics.enabled = kind_of(f.value) != Kind::Null;
      for (const Field& m : c.fields(f.value, f.path, {"host", "port"})) {
        if (m.key == "host")
          cfg.metrics.host = c.get_string(m);
        else
          cfg.metrics.port = static_cast<int>(c.get_int(m, 0, 65535));
      }
    } else if (f.key == "process_manager_cls") {
      manager = c.get_string(f);
      if (manager != "ForkServerManager" && manager != "ProcessManager" &&
          manager != "SpawnServerManager")
        c.fail(f, f.path +
                      " must be ForkServerManager, ProcessManager or SpawnServerManager, got " +
                      config_detail::describe(f.value));
      c.warn(f.key_node.Mark(),
             f.path + " is Python-only (the C++ service forks its workers itself); ignored");
    } else {  // process_manager_kwargs
      for (const Field& m : c.fields(f.value, f.path, {"preload_modules"})) {
        if (kind_of(m.value) != Kind::Null) (void)c.get_string_list(m);
        c.warn(m.key_node.Mark(), m.path +
                                      " is Python-only (there are no modules to preload "
                                      "in C++); ignored");
        preload = m;
      }
    }
  }
  // Upstream passes it to the manager's constructor, which only ForkServerManager accepts.
  if (preload && manager != "ForkServerManager")
    c.fail(preload->key_node.Mark(), preload->path +
                                         " is only accepted with process_manager_cls "
                                         "ForkServerManager, not " +
                                         manager);
}

// The required `key` of producer `section`, which must be a mapping of task name → options.
std::vector<Field> task_map(const Ctx& c, const Field& section, const char* key) {
  std::optional<Field> found;
  for (const Field& f : c.fields(section.value, section.path, {key})) found = f;
  if (!found) c.fail(section, section.path + ": missing required key '" + key + "'");
  if (kind_of(found->value) != Kind::Map)
    c.fail(*found, found->path + " must be a mapping of task name to options, got " +
                       config_detail::describe(found->value));
  return c.any_fields(found->value, found->path);
}

void load_producers(const Ctx& c, const Field& section, ProducersConfig& p) {
  for (const Field& f : c.any_fields(section.value, "producers")) {
    if (f.key == "ScheduledProducer") {
      p.scheduled_enabled = true;
      for (const Field& t : task_map(c, f, "task_schedule")) {
        if (kind_of(t.value) != Kind::Map)
          c.fail(t, t.path + " must be a mapping with a schedule, got " +
                        config_detail::describe(t.value));
        ScheduledTask task{t.key, 0, nlohmann::json::object()};
        bool has_schedule = false;
        for (const Field& o : c.any_fields(t.value, t.path)) {
          if (o.key == "schedule") {
            task.schedule = c.get_number(o, 0, true);
            has_schedule = true;
          } else {
            task.extra[o.key] = c.to_json(o.value, o.path);
          }
        }
        if (!has_schedule) c.fail(t.value.Mark(), t.path + ": missing required key 'schedule'");
        p.schedule.push_back(std::move(task));
      }
    } else if (f.key == "OnStartProducer") {
      p.on_start_enabled = true;
      for (const Field& t : task_map(c, f, "task_list")) {
        if (kind_of(t.value) != Kind::Null && kind_of(t.value) != Kind::Map)
          c.fail(t, t.path + " must be a mapping of message options, got " +
                        config_detail::describe(t.value));
        nlohmann::json extra = c.to_json(t.value, t.path);
        if (extra.is_null()) extra = nlohmann::json::object();
        p.on_start.push_back(OnStartTask{t.key, std::move(extra)});
      }
    } else if (f.key == "ControlProducer") {
      p.control_enabled = true;
      for (const Field& o : c.any_fields(f.value, f.path))
        c.fail(o.key_node.Mark(),
               "unknown key '" + excerpt(o.key) + "' in " + f.path + " (it takes no options)");
    } else {
      c.fail(f.key_node.Mark(), "unknown producer '" + excerpt(f.key) +
                                    "' in producers (known: ScheduledProducer, "
                                    "OnStartProducer, ControlProducer)");
    }
    p.order.push_back(f.key);
  }
}

void load_publish(const Ctx& c, const Field& section, Config& cfg) {
  for (const Field& f :
       c.fields(section.value, "publish", {"default_broker", "default_control_broker"})) {
    std::optional<std::string> name = c.get_opt_string(f);
    if (name && *name != "pg_notify" && *name != "socket")
      c.fail(f,
             f.path + " names unknown broker '" + excerpt(*name) + "' (known: pg_notify, socket)");
    // Upstream only fails when a publisher uses it, so a warning keeps such files loading.
    if (name && (*name == "pg_notify" ? !cfg.pg_notify.enabled : !cfg.socket.enabled))
      c.warn(f.value.Mark(), f.path + " names broker '" + *name + "', which is not configured");
    (f.key == "default_broker" ? cfg.publish.default_broker : cfg.publish.default_control_broker) =
        name;
  }
}

void load_worker(const Ctx& c, const Field& section, WorkerConfig& w) {
  for (const Field& f : c.fields(section.value, "worker", {"worker_cls", "worker_kwargs"})) {
    if (f.key == "worker_cls") {
      (void)c.get_string(f);
      c.warn(f.key_node.Mark(), f.path + " is a Python import path; the C++ worker ignores it");
    } else {
      for (const Field& k : c.fields(f.value, f.path, {"idle_timeout"}))
        w.idle_timeout = c.get_number(k, 0);
    }
  }
}

// yaml-cpp's messages for tab indentation ("illegal map value", ...) do not mention tabs.
std::string tab_hint(const std::string& text, const YAML::Mark& m) {
  if (m.is_null()) return "";
  std::size_t start = 0;
  for (int line = 0; line < m.line && start != std::string::npos; ++line) {
    start = text.find('\n', start);
    if (start != std::string::npos) ++start;
  }
  if (start == std::string::npos) return "";
  std::size_t indent_end = text.find_first_not_of(" \t", start);
  std::string_view indent(text.data() + start,
                          (indent_end == std::string::npos ? text.size() : indent_end) - start);
  return indent.find('\t') == std::string_view::npos ? ""
                                                     : " (tabs cannot indent YAML; use spaces)";
}

// Records where each document starts; nothing else is needed to count them.
struct DocumentStarts : YAML::EventHandler {
  std::vector<YAML::Mark> starts;
  void OnDocumentStart(const YAML::Mark& m) override { starts.push_back(m); }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t,
                const std::string&) override {}
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {}
  void OnMapEnd() override {}
};

// PyYAML's safe_load wants exactly one document. Not YAML::LoadAll: on a token the parser
// cannot place (e.g. a leading ',') it returns an empty document forever without advancing,
// and LoadAll allocates until the process is killed. So read at most three documents; one
// starting where the previous one did means the parser is stuck.
void check_single_document(const std::string& text, const Ctx& c) {
  std::istringstream in(text);
  YAML::Parser parser(in);
  DocumentStarts docs;
  while (docs.starts.size() < 3 && parser.HandleNextDocument(docs)) {
    const std::size_t n = docs.starts.size();
    if (n >= 2 && docs.starts[n - 1].pos == docs.starts[n - 2].pos) {
      const YAML::Mark& m = docs.starts[n - 1];
      std::string what = static_cast<std::size_t>(m.pos) < text.size()
                             ? "'" + excerpt(text.substr(static_cast<std::size_t>(m.pos), 1)) + "'"
                             : "end of input";
      c.fail(m, "unexpected " + what + " (not valid YAML here)");
    }
  }
  if (docs.starts.size() > 1)
    c.fail(docs.starts[1], "expected a single YAML document, found more than one");
}

void load(const std::string& text, const Ctx& c, Config& cfg) {
  check_single_document(text, c);
  const YAML::Node root = YAML::Load(text);
  if (kind_of(root) == Kind::Null)
    c.fail(root.Mark(), "the config is empty; it must be a mapping with at least 'version: 2'");
  if (kind_of(root) != Kind::Map)
    c.fail(root.Mark(), "the config must be a mapping, got " + config_detail::describe(root));
  c.check_tree(root);

  std::map<std::string, Field> sections;
  for (const Field& f : c.any_fields(root, "")) {
    static const char* const kKnown[] = {"version", "service", "brokers",   "producers",
                                         "publish", "worker",  "extensions"};
    bool known = false;
    for (const char* k : kKnown) known = known || f.key == k;
    if (known)
      sections.emplace(f.key, f);
    else
      c.warn(f.key_node.Mark(), "unknown top-level key '" + excerpt(f.key) + "' ignored");
  }
  auto version = sections.find("version");
  if (version == sections.end())
    c.fail(root.Mark(), std::string("missing required key 'version' (") + kVersionRule + ")");
  const Field& v = version->second;
  if (kind_of(v.value) != Kind::Int || c.get_int(v, INT64_MIN, INT64_MAX) != 2)
    c.fail(v, "version must be 2, got " + config_detail::describe(v.value) + " (" + kVersionRule +
                  ")");

  // Brokers before publish, which refers to them; the rest in the order of §6.2.
  auto each = [&](const char* name, auto fn) {
    if (auto it = sections.find(name); it != sections.end()) fn(it->second);
  };
  each("service", [&](const Field& f) { load_service(c, f, cfg); });
  each("brokers", [&](const Field& f) { config_detail::load_brokers(c, f, cfg); });
  each("producers", [&](const Field& f) { load_producers(c, f, cfg.producers); });
  each("publish", [&](const Field& f) { load_publish(c, f, cfg); });
  each("worker", [&](const Field& f) { load_worker(c, f, cfg.worker); });
  each("extensions",
       [&](const Field& f) { config_detail::load_extensions(c, f.value, cfg.extensions); });
}

}  // namespace

Result<Config> load_config_text(const std::string& text, const std::string& name,
                                ConninfoCheck check) {
  Config cfg;
  cfg.path = name;
  const Ctx c(name, &cfg.warnings);
  try {
    load(text, c, cfg);
    // Last, so that the first error is the same whether or not the check is deferred.
    if (check == ConninfoCheck::AtLoad && cfg.pg_notify.conninfo_source.pending)
      if (Status st = resolve_conninfo(cfg.pg_notify); !st) return Error{st.error().message};
  } catch (const ConfigError& e) {
    return Error{e.what()};
  } catch (const YAML::Exception& e) {
    // yaml-cpp 0.7's DeepRecursion carries the message "bad file", and its type cannot be
    // caught by name (not exported from the shared library). We never open files through
    // yaml-cpp, so that message means too deep.
    if (e.msg == YAML::ErrorMsg::BAD_FILE)
      return Error{c.where(e.mark) + "nesting too deep for the YAML parser"};
    return Error{c.where(e.mark) + e.msg + tab_hint(text, e.mark)};
  } catch (const std::exception& e) {
    return Error{name + ": error while loading config: " + e.what()};
  } catch (...) {
    return Error{name + ": unknown error while loading config"};
  }
  return cfg;
}

bool apply_conninfo_override(Config& config) {
  const char* conninfo = std::getenv("DISPATCHERD_PG_CONNINFO");
  if (conninfo == nullptr || *conninfo == '\0' || !config.pg_notify.enabled) return false;
  config.pg_notify.conninfo = conninfo;
  return true;
}

Result<Config> load_config(const std::string& path, ConninfoCheck check) {
  auto read_error = [&path](int err) {
    return Error{path + ": cannot read config file: " + std::generic_category().message(err)};
  };
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return read_error(errno);
  std::string text;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      ::close(fd);
      return read_error(err);
    }
    if (n == 0) break;
    text.append(buf, static_cast<std::size_t>(n));
    if (text.size() > kMaxConfigBytes) {
      ::close(fd);
      return Error{path + ": cannot read config file: larger than " +
                   std::to_string(kMaxConfigBytes >> 20) + " MiB"};
    }
  }
  ::close(fd);
  Result<Config> r = load_config_text(text, path, check);
  if (r.ok()) {
    std::error_code ec;
    std::filesystem::path abs = std::filesystem::absolute(path, ec);
    r->path = ec ? path : abs.lexically_normal().string();
  }
  return r;
}

std::string resolve_config_path(const std::string& cli_path) {
  if (!cli_path.empty()) return cli_path;
  // Upstream tests the variable for truth, so an empty value counts as unset.
  const char* env = std::getenv("DISPATCHERD_CONFIG_FILE");
  if (env && *env) return env;
  return "dispatcher.yml";
}

}  // namespace dispatcherd
