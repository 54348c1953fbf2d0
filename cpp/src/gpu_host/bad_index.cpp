// BadIndex: a device word of "lowest bad index so far" (see bad_index.h).
#include "himari/cuda/bad_index.h"

#include <climits>

namespace himari::cuda {

namespace {
constexpr unsigned long long kNone = ULLONG_MAX;
}  // namespace

BadIndex::BadIndex(int device, Stream stream)
    : device_(device), word_(allocate(sizeof(unsigned long long), device)) {
  clear(stream);
}

void BadIndex::clear(Stream stream) { copy_to_device(word_.get(), &kNone, sizeof(kNone), device_, stream); }

std::optional<unsigned long long> BadIndex::take(Stream stream) {
  unsigned long long first = kNone;
  copy_to_host(&first, word_.get(), sizeof(first), device_, stream);
  if (first == kNone) return std::nullopt;
  clear(stream);
  return first;
}

}  // namespace himari::cuda
