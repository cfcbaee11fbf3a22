#pragma once
// Metric families with labels, the registry that owns them, and the Prometheus text
// exposition format 0.0.4.
//
//   auto reg = std::make_shared<metrics::registry>();
//   auto& hits = reg->counter_family("cache_hits_total", "Cache hits", {"cache"});
//   hits.labels({"users"}).inc();
//   std::string text = reg->expose();   // serve with Content-Type metrics::content_type
//
// Looking up a labelled child takes a shared lock (an exclusive one the first time a label
// set is seen); keep the returned reference to update it without any lock.

#include <bulwark/metrics/instruments.hpp>

#include <charconv>
#include <cmath>
#include <initializer_list>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <vector>

namespace bulwark::metrics {

/// The Content-Type of the text exposition format.
inline constexpr std::string_view content_type = "text/plain; version=0.0.4; charset=utf-8";

namespace detail {

inline void append_double(std::string& out, double v) {
  if (std::isnan(v)) {
    out += "NaN";
  } else if (std::isinf(v)) {
    out += v > 0 ? "+Inf" : "-Inf";
  } else {
    char buf[32];
    auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
    out.append(buf, static_cast<std::size_t>(end - buf));
  }
}

inline void append_escaped(std::string& out, std::string_view s, bool quote) {
  for (char c : s) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '\n')
      out += "\\n";
    else if (quote && c == '"')
      out += "\\\"";
    else
      out += c;
  }
}

inline bool valid_name(std::string_view n, bool label) {
  if (n.empty()) return false;
  for (std::size_t i = 0; i < n.size(); ++i) {
    const char c = n[i];
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (!label && c == ':');
    if (!alpha && !(i > 0 && c >= '0' && c <= '9')) return false;
  }
  return !(label && n.size() >= 2 && n.substr(0, 2) == "__");
}

} // namespace detail

enum class metric_type { counter, gauge, histogram };

/// The part of a family the registry needs to expose it, whatever its instrument.
class family_base {
public:
  family_base(std::string name, std::string help, std::vector<std::string> label_names)
      : name_(std::move(name)), help_(std::move(help)), label_names_(std::move(label_names)) {
    if (!detail::valid_name(name_, false)) throw std::invalid_argument("invalid metric name: " + name_);
    for (const auto& l : label_names_)
      if (!detail::valid_name(l, true) || l == "le") throw std::invalid_argument("invalid label name: " + l);
  }
  virtual ~family_base() = default;
  virtual metric_type type() const noexcept = 0;
  const std::string& name() const noexcept { return name_; }
  const std::vector<std::string>& label_names() const noexcept { return label_names_; }
  /// Appends this family in the text exposition format.
  virtual void expose(std::string& out) const = 0;

protected:
  void append_header(std::string& out, std::string_view type) const {
    out += "# HELP ";
    out += name_;
    out += ' ';
    detail::append_escaped(out, help_, false);
    out += "\n# TYPE ";
    out += name_;
    out += ' ';
    out += type;
    out += '\n';
  }
  // `{a="x",b="y"` without the closing brace (histograms add le), or nothing when unlabelled.
  void append_labels(std::string& out, const std::vector<std::string>& values, std::string_view extra_name = {},
                     std::string_view extra_value = {}) const {
    if (values.empty() && extra_name.empty()) return;
    out += '{';
    for (std::size_t i = 0; i < values.size(); ++i) {
      if (i) out += ',';
      out += label_names_[i];
      out += "=\"";
      detail::append_escaped(out, values[i], true);
      out += '"';
    }
    if (!extra_name.empty()) {
      if (!values.empty()) out += ',';
      out += extra_name;
      out += "=\"";
      out += extra_value;
      out += '"';
    }
    out += '}';
  }

  std::string name_, help_;
  std::vector<std::string> label_names_;
};

/// A metric with a fixed set of label names; one instrument per distinct set of label values.
template <class Instrument> class family final : public family_base {
public:
  family(std::string name, std::string help, std::vector<std::string> label_names,
         std::shared_ptr<const std::vector<double>> bounds = nullptr)
      : family_base(std::move(name), std::move(help), std::move(label_names)), bounds_(std::move(bounds)) {}

  metric_type type() const noexcept override {
    if constexpr (std::is_same_v<Instrument, counter>)
      return metric_type::counter;
    else if constexpr (std::is_same_v<Instrument, gauge>)
      return metric_type::gauge;
    else
      return metric_type::histogram;
  }

  /// The instrument for these label values (one per label name, in order), created on first use.
  /// Throws std::invalid_argument when the count of values is wrong.
  Instrument& labels(std::initializer_list<std::string_view> values) {
    return labels(std::vector<std::string_view>(values.begin(), values.end()));
  }
  Instrument& labels(const std::vector<std::string_view>& values) {
    if (values.size() != label_names_.size())
      throw std::invalid_argument("metric " + name_ + ": expected " + std::to_string(label_names_.size()) + " labels");
    std::string key;
    for (auto v : values) {
      key.append(v);
      key.push_back('\xff');
    }
    {
      std::shared_lock lock(mutex_);
      if (auto it = children_.find(key); it != children_.end()) return *it->second.instrument;
    }
    std::unique_lock lock(mutex_);
    auto& slot = children_[key];
    if (!slot.instrument) {
      slot.values.assign(values.begin(), values.end());
      if constexpr (std::is_same_v<Instrument, histogram>)
        slot.instrument = std::make_unique<histogram>(bounds_);
      else
        slot.instrument = std::make_unique<Instrument>();
    }
    return *slot.instrument;
  }

  void expose(std::string& out) const override {
    std::shared_lock lock(mutex_);
    if constexpr (std::is_same_v<Instrument, counter>)
      append_header(out, "counter");
    else if constexpr (std::is_same_v<Instrument, gauge>)
      append_header(out, "gauge");
    else
      append_header(out, "histogram");
    // Sorted by label values so the output is stable.
    std::map<std::vector<std::string>, const Instrument*> sorted;
    for (const auto& [key, child] : children_) sorted.emplace(child.values, child.instrument.get());
    for (const auto& [values, inst] : sorted) {
      if constexpr (std::is_same_v<Instrument, histogram>) {
        std::uint64_t cumulative = 0;
        const auto& bounds = inst->bounds();
        for (std::size_t i = 0; i <= bounds.size(); ++i) {
          cumulative += inst->bucket_count(i);
          std::string le;
          if (i == bounds.size())
            le = "+Inf";
          else
            detail::append_double(le, bounds[i]);
          out += name_;
          out += "_bucket";
          append_labels(out, values, "le", le);
          out += ' ';
          out += std::to_string(cumulative);
          out += '\n';
        }
        out += name_;
        out += "_sum";
        append_labels(out, values);
        out += ' ';
        detail::append_double(out, inst->sum());
        out += '\n';
        out += name_;
        out += "_count";
        append_labels(out, values);
        out += ' ';
        out += std::to_string(cumulative);
        out += '\n';
      } else {
        out += name_;
        append_labels(out, values);
        out += ' ';
        detail::append_double(out, inst->value());
        out += '\n';
      }
    }
  }

private:
  struct child {
    std::vector<std::string> values;
    std::unique_ptr<Instrument> instrument;
  };
  std::shared_ptr<const std::vector<double>> bounds_;
  mutable std::shared_mutex mutex_;
  std::unordered_map<std::string, child> children_;
};

/// Owns metric families by name and renders them all. Registering a name twice returns the
/// existing family when its type and label names match, and throws std::invalid_argument
/// otherwise.
class registry {
public:
  family<counter>& counter_family(std::string name, std::string help, std::vector<std::string> label_names) {
    return get<counter>(std::move(name), std::move(help), std::move(label_names), nullptr);
  }
  family<gauge>& gauge_family(std::string name, std::string help, std::vector<std::string> label_names) {
    return get<gauge>(std::move(name), std::move(help), std::move(label_names), nullptr);
  }
  /// `bounds`: bucket upper bounds, strictly ascending (the +Inf bucket is implicit).
  family<histogram>& histogram_family(std::string name, std::string help, std::vector<std::string> label_names,
                                      std::vector<double> bounds) {
    if (bounds.empty() || !std::is_sorted(bounds.begin(), bounds.end()) ||
        std::adjacent_find(bounds.begin(), bounds.end()) != bounds.end())
      throw std::invalid_argument("histogram " + name + ": bounds must be strictly ascending");
    return get<histogram>(std::move(name), std::move(help), std::move(label_names),
                          std::make_shared<const std::vector<double>>(std::move(bounds)));
  }
  /// Every family in the Prometheus text format 0.0.4, families sorted by name.
  std::string expose() const {
    std::string out;
    std::lock_guard lock(mutex_);
    for (const auto& [name, f] : families_) f->expose(out);
    return out;
  }

private:
  template <class Instrument> family<Instrument>& get(std::string name, std::string help,
                                                      std::vector<std::string> label_names,
                                                      std::shared_ptr<const std::vector<double>> bounds) {
    std::lock_guard lock(mutex_);
    if (auto it = families_.find(name); it != families_.end()) {
      auto* f = dynamic_cast<family<Instrument>*>(it->second.get());
      if (!f || f->label_names() != label_names)
        throw std::invalid_argument("metric " + name + " already registered with another type or labels");
      return *f;
    }
    auto f = std::make_unique<family<Instrument>>(name, std::move(help), std::move(label_names), std::move(bounds));
    auto& ref = *f;
    families_.emplace(std::move(name), std::move(f));
    return ref;
  }

  mutable std::mutex mutex_;
  std::map<std::string, std::unique_ptr<family_base>> families_;
};

} // namespace bulwark::metrics
