#pragma once
// Internal to the config loader (config*.cpp): typed reading of
// yaml-cpp nodes with `file:line:col:` errors. yaml-cpp scalars are untyped text, so the
// int/float/bool/null resolution of PyYAML's safe_load (YAML 1.1) is reproduced here: the
// same file must mean the same thing to upstream and to us.
//
// Errors are thrown as ConfigError and caught in load_config_text; nothing here escapes the
// config module.

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <initializer_list>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "dispatcherd/config.h"

namespace dispatcherd::config_detail {

/// A fully formatted `file:line:col: message`, thrown while loading and caught at the edge.
class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// What a node resolves to under PyYAML's safe_load rules.
enum class Kind { Null, Bool, Int, Float, String, Map, Seq };

/// Resolves a node's kind (plain scalars by the YAML 1.1 patterns, quoted ones are strings).
Kind kind_of(const YAML::Node& n);

/// A short description for messages, e.g. "string 'abc'", "integer 5", "a mapping".
std::string describe(const YAML::Node& n);

/// `s` cut to at most `max` bytes on a UTF-8 boundary (with "…"), control bytes escaped,
/// so a message stays one readable line.
std::string excerpt(std::string_view s, std::size_t max = 40);

/// One key/value of a mapping, with the key's position (values that are empty nulls carry
/// the position of the following token, so null values are reported at their key).
struct Field {
  std::string key;
  std::string path;  ///< dotted path for messages, e.g. "service.pool_kwargs.min_workers"
  YAML::Node key_node;
  YAML::Node value;
};

/// Loading context: the file name for messages and the warnings collected so far.
class Ctx {
 public:
  Ctx(std::string file, std::vector<std::string>* warnings)
      : file_(std::move(file)), warnings_(warnings) {}

  /// The `file:line:col: ` prefix for a mark (yaml-cpp marks are 0-based; a null mark is 1:1).
  std::string where(const YAML::Mark& m) const;
  /// Throws ConfigError with `message` at `m`.
  [[noreturn]] void fail(const YAML::Mark& m, const std::string& message) const;
  /// Throws at the field's value, or at its key when the value is null.
  [[noreturn]] void fail(const Field& f, const std::string& message) const;
  /// Records `file:line:col: warning: message`.
  void warn(const YAML::Mark& m, const std::string& message) const;

  /// The entries of the mapping at `node` (null counts as empty). Each key must be in
  /// `allowed` unless `allowed` is empty, else "unknown key 'k' in <path>".
  std::vector<Field> fields(const YAML::Node& node, const std::string& path,
                            std::initializer_list<std::string_view> allowed) const;
  /// Same, for mappings whose keys are free-form (task names, libpq parameters).
  std::vector<Field> any_fields(const YAML::Node& node, const std::string& path) const;

  /// Typed getters; each fails with "<path> must be <type>, got <description>".
  std::int64_t get_int(const Field& f, std::int64_t min, std::int64_t max) const;
  /// A finite number (an int is accepted) >= `min` (> `min` when `exclusive`).
  double get_number(const Field& f, double min, bool exclusive = false) const;
  std::optional<double> get_opt_number(const Field& f, double min, bool exclusive = false) const;
  bool get_bool(const Field& f) const;
  std::string get_string(const Field& f) const;
  std::optional<std::string> get_opt_string(const Field& f) const;
  std::vector<std::string> get_string_list(const Field& f) const;
  /// A scalar parameter value (string, number or bool) as its text; fails on null/containers.
  std::string get_scalar_text(const Field& f) const;

  /// The node as JSON (ints as integers, floats as doubles, mapping keys as their text).
  nlohmann::json to_json(const YAML::Node& n, const std::string& path) const;

  /// Rejects duplicate mapping keys anywhere in the tree, bounded in depth and in the
  /// number of nodes visited (aliases can make a small file expand exponentially).
  void check_tree(const YAML::Node& root) const;

 private:
  const std::string file_;
  std::vector<std::string>* warnings_;
};

/// Loads the `brokers:` section into cfg.pg_notify, cfg.socket and cfg.broker_order
/// (config_brokers.cpp).
void load_brokers(const Ctx& c, const Field& section, Config& cfg);

/// Loads the `extensions:` section (config_extensions.cpp).
void load_extensions(const Ctx& c, const YAML::Node& node, ExtensionsConfig& out);

}  // namespace dispatcherd::config_detail
