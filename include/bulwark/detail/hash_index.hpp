#pragma once
// hash_index: a map from a precomputed hash to a handle (an iterator into storage the caller
// owns), with open addressing. Linear probing over a power-of-two table kept at most half
// full, erase by backward shift (no tombstones), so a lookup costs no division and, on a hit,
// usually one key comparison: the caller's `matches(handle)` runs only for equal hashes.
// Not thread-safe: the owner locks; only prefetch() may be called without the lock.

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace bulwark::detail {

template <class Handle> class hash_index {
public:
  struct cell {
    std::size_t tag = 0; ///< the hash with its lowest bit set; 0: empty
    Handle handle{};
  };

  /// The cell holding hash's entry when matches(handle) holds, or nullptr. Valid until the
  /// next insert or erase.
  template <class Matches> const cell* find(std::size_t hash, Matches&& matches) const {
    if (cells_.empty()) return nullptr;
    const std::size_t tag = tag_of(hash);
    for (std::size_t i = home(tag);; i = (i + 1) & mask_) {
      const cell& c = cells_[i];
      if (c.tag == 0) return nullptr;
      if (c.tag == tag && matches(c.handle)) return &c;
    }
  }
  template <class Matches> cell* find(std::size_t hash, Matches&& matches) {
    return const_cast<cell*>(std::as_const(*this).find(hash, std::forward<Matches>(matches)));
  }

  /// Asks the CPU to fetch the cell where find(hash) starts, so that a lookup made a little later
  /// (after a clock read, a lock) finds it in the cache instead of waiting ~100 cycles for it.
  /// May be called without the owner's lock, while another thread inserts or erases: it reads
  /// only atomics describing the table, and computes an address, never reads through it. A stale
  /// address (the table grew meanwhile) prefetches memory no longer used: harmless, a prefetch
  /// cannot fault and changes nothing the program sees.
  void prefetch(std::size_t hash) const noexcept {
#if defined(__GNUC__)
    const std::uintptr_t base = prefetch_base_.load(std::memory_order_relaxed);
    if (base == 0) return;
    const std::size_t mask = prefetch_mask_.load(std::memory_order_relaxed);
    __builtin_prefetch(reinterpret_cast<const void*>(base + ((tag_of(hash) >> 1) & mask) * sizeof(cell)));
#else
    (void)hash;
#endif
  }

  /// Adds handle under hash; the caller has checked that its key is not present.
  void insert(std::size_t hash, Handle handle) {
    if ((size_ + 1) * 2 > cells_.size()) grow();
    place(tag_of(hash), std::move(handle));
    ++size_;
  }

  /// Removes the entry find() returned.
  void erase(cell* found) {
    std::size_t hole = static_cast<std::size_t>(found - cells_.data());
    // Backward shift: move up every later entry of the run that may not skip the hole.
    for (std::size_t j = (hole + 1) & mask_; cells_[j].tag != 0; j = (j + 1) & mask_) {
      const std::size_t want = home(cells_[j].tag);
      const bool stays = hole <= j ? (hole < want && want <= j) : (hole < want || want <= j);
      if (stays) continue;
      cells_[hole] = std::move(cells_[j]);
      hole = j;
    }
    cells_[hole] = cell{};
    --size_;
  }

  std::size_t size() const noexcept { return size_; }

private:
  static std::size_t tag_of(std::size_t hash) noexcept { return hash | 1u; }
  std::size_t home(std::size_t tag) const noexcept { return (tag >> 1) & mask_; }

  void place(std::size_t tag, Handle handle) {
    std::size_t i = home(tag);
    while (cells_[i].tag != 0) i = (i + 1) & mask_;
    cells_[i] = cell{tag, std::move(handle)};
  }

  void grow() {
    std::vector<cell> old = std::exchange(cells_, std::vector<cell>(std::max<std::size_t>(16, cells_.size() * 2)));
    mask_ = cells_.size() - 1;
    for (auto& c : old)
      if (c.tag != 0) place(c.tag, std::move(c.handle));
    prefetch_mask_.store(mask_, std::memory_order_relaxed);
    prefetch_base_.store(reinterpret_cast<std::uintptr_t>(cells_.data()), std::memory_order_relaxed);
  }

  std::vector<cell> cells_;
  std::size_t mask_ = 0;
  std::size_t size_ = 0;
  // The table as prefetch() sees it, without the owner's lock (copies of cells_.data() and mask_).
  std::atomic<std::uintptr_t> prefetch_base_{0};
  std::atomic<std::size_t> prefetch_mask_{0};
};

} // namespace bulwark::detail
