#pragma once
// keyed_list<T>: entries in a list (insertion order, stable addresses), found by key through a
// hash_index of list iterators, the layout memory::cache and memory::repository use. Against a
// std::unordered_map<std::string, T> it saves a dependent cache miss per lookup (libstdc++'s
// bucket points at the node *before* the bucket's first one) and the division of a prime bucket
// count. Keys are hashed with detail::hash_key; a caller that looks a key up more than once
// hashes it once and passes the hash. Not thread-safe: the owner locks.

#include <bulwark/detail/hash_index.hpp>
#include <bulwark/detail/key_hash.hpp>

#include <cstddef>
#include <iterator>
#include <list>
#include <string>
#include <string_view>
#include <utility>

namespace bulwark::detail {

template <class T> class keyed_list {
public:
  struct entry {
    std::string key;
    T value{};
  };
  using iterator = typename std::list<entry>::iterator;
  using const_iterator = typename std::list<entry>::const_iterator;

  /// key's entry (`hash`: hash_key(key)), or nullptr. Valid until it is erased.
  entry* find(std::string_view key, std::size_t hash) {
    auto* c = index_.find(hash, [key](const iterator& it) { return same_key(it->key, key); });
    return c ? &*c->handle : nullptr;
  }
  const entry* find(std::string_view key, std::size_t hash) const {
    return const_cast<keyed_list*>(this)->find(key, hash);
  }

  entry* find(std::string_view key) { return find(key, hash_key(key)); }
  const entry* find(std::string_view key) const { return find(key, hash_key(key)); }

  /// hash_index::prefetch: the start of find(key, hash)'s probe, asked for ahead; callable
  /// without the owner's lock.
  void prefetch(std::size_t hash) const noexcept { index_.prefetch(hash); }

  /// key's entry, added (with a value-initialised T, at the end) when missing; whether it was.
  std::pair<entry*, bool> try_emplace(std::string_view key, std::size_t hash) {
    if (auto* found = find(key, hash)) return {found, false};
    entries_.push_back(entry{std::string(key), T{}});
    index_.insert(hash, std::prev(entries_.end()));
    return {&entries_.back(), true};
  }

  std::pair<entry*, bool> try_emplace(std::string_view key) { return try_emplace(key, hash_key(key)); }

  /// Removes the entry at `it`; the iterator after it.
  iterator erase(iterator it) {
    index_.erase(index_.find(hash_key(it->key), [it](const iterator& other) { return other == it; }));
    return entries_.erase(it);
  }

  std::size_t size() const noexcept { return entries_.size(); }
  iterator begin() noexcept { return entries_.begin(); }
  iterator end() noexcept { return entries_.end(); }
  const_iterator begin() const noexcept { return entries_.begin(); }
  const_iterator end() const noexcept { return entries_.end(); }

private:
  std::list<entry> entries_;
  hash_index<iterator> index_;
};

} // namespace bulwark::detail
