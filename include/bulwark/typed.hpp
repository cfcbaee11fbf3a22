#pragma once
// typed<T, Codec>: values of type T over the byte-level concepts. Backends deal in bytes; a
// codec turns T into bytes and back, so an adapter is written once, not per value type.
//
// A Codec for T provides
//   static std::string encode(const T&)
//   static result<T> decode(std::string_view)   // errc::invalid_argument with the reason
// json_codec<T> is the default (nlohmann_json; T needs to_json/from_json).
//
// typed_repository<Repository, T> and typed_cache<Cache, T> wrap a model and speak T.

#include <bulwark/cache.hpp>
#include <bulwark/repository.hpp>

#include <nlohmann/json.hpp>

#include <chrono>
#include <concepts>
#include <optional>
#include <string>
#include <string_view>

namespace bulwark {

template <class C, class T>
concept codec_for = requires(const T& value, std::string_view bytes) {
  { C::encode(value) } -> std::convertible_to<std::string>;
  { C::decode(bytes) } -> std::same_as<result<T>>;
};

/// JSON through nlohmann_json. A decode error is errc::invalid_argument carrying the parser's
/// message (e.g. "[json.exception.parse_error.101] parse error at line 1, column 2: ...").
template <class T> struct json_codec {
  static std::string encode(const T& value) { return nlohmann::json(value).dump(); }
  static result<T> decode(std::string_view bytes) {
    try {
      return nlohmann::json::parse(bytes).get<T>();
    } catch (const nlohmann::json::exception& e) {
      return error(errc::invalid_argument, e.what());
    }
  }
};

/// A value of type T with its repository version.
template <class T> struct typed_versioned {
  T value;
  version_t version = no_version;
};

/// A cached value of type T.
template <class T> struct typed_cached {
  T value;
  version_t version = no_version;
  std::chrono::system_clock::time_point stored_at{};
};

/// The codec pair for T: typed<T>::encode / typed<T>::decode.
template <class T, class Codec = json_codec<T>>
requires codec_for<Codec, T>
struct typed {
  using value_type = T;
  using codec = Codec;
  static std::string encode(const T& value) { return Codec::encode(value); }
  static result<T> decode(std::string_view bytes) { return Codec::decode(bytes); }
};

/// A repository of T over a byte repository. Holds a reference: the model outlives it.
template <bulwark::repository Repository, class T, class Codec = json_codec<T>>
requires codec_for<Codec, T>
class typed_repository {
public:
  explicit typed_repository(Repository& repo) : repo_(repo) {}

  task<std::optional<typed_versioned<T>>> get(std::string_view key) {
    auto got = co_await repo_.get(key);
    if (!got) co_return got.error();
    if (!got.value()) co_return std::optional<typed_versioned<T>>{};
    auto decoded = Codec::decode(got.value()->value);
    if (!decoded) co_return decoded.error();
    co_return std::optional<typed_versioned<T>>{typed_versioned<T>{std::move(decoded).value(), got.value()->version}};
  }

  task<version_t> put(std::string_view key, const T& value, std::optional<version_t> expected) {
    return repo_.put(key, Codec::encode(value), expected);
  }

  task<bool> erase(std::string_view key) { return repo_.erase(key); }

  Repository& bytes() noexcept { return repo_; }

private:
  Repository& repo_;
};

/// A cache of T over a byte cache. Holds a reference: the model outlives it.
template <bulwark::cache Cache, class T, class Codec = json_codec<T>>
requires codec_for<Codec, T>
class typed_cache {
public:
  explicit typed_cache(Cache& cache) : cache_(cache) {}

  task<std::optional<typed_cached<T>>> get(std::string_view key) {
    auto got = co_await cache_.get(key);
    if (!got) co_return got.error();
    if (!got.value()) co_return std::optional<typed_cached<T>>{};
    auto decoded = Codec::decode(got.value()->value);
    if (!decoded) co_return decoded.error();
    co_return std::optional<typed_cached<T>>{
        typed_cached<T>{std::move(decoded).value(), got.value()->version, got.value()->stored_at}};
  }

  task<bool> put(std::string_view key, const T& value, version_t version, std::chrono::milliseconds ttl) {
    return cache_.put(key, versioned{Codec::encode(value), version}, ttl);
  }

  task<bool> erase(std::string_view key) { return cache_.erase(key); }

  Cache& bytes() noexcept { return cache_; }

private:
  Cache& cache_;
};

} // namespace bulwark
