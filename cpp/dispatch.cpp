// Run-time choice of the kernels' instruction set.
#include <cstdlib>
#include <cstring>

#include "kernels.hpp"

// The per-instruction-set kernel tables (kernels_impl.hpp), declared for those CMake built.
#define FASTGD_DECLARE_ISA(ns)                          \
    namespace fastgd {                                  \
    namespace ns {                                      \
    extern const Kernels<float> kernels_float;          \
    extern const Kernels<double> kernels_double;        \
    }                                                   \
    }
FASTGD_DECLARE_ISA(baseline)
#ifdef FASTGD_HAVE_AVX2
FASTGD_DECLARE_ISA(avx2)
#endif
#ifdef FASTGD_HAVE_AVX512
FASTGD_DECLARE_ISA(avx512)
#endif

namespace fastgd {
namespace {

struct Isa {
    const char* name;
    const Kernels<float>* f32;
    const Kernels<double>* f64;
};

// Best first.
const Isa kIsas[] = {
#ifdef FASTGD_HAVE_AVX512
    {"avx512", &avx512::kernels_float, &avx512::kernels_double},
#endif
#ifdef FASTGD_HAVE_AVX2
    {"avx2", &avx2::kernels_float, &avx2::kernels_double},
#endif
    {"baseline", &baseline::kernels_float, &baseline::kernels_double},
};
constexpr int kIsaCount = static_cast<int>(sizeof(kIsas) / sizeof(kIsas[0]));

bool cpu_supports(const char* name) {
    if (std::strcmp(name, "baseline") == 0) return true;
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    __builtin_cpu_init();
    if (std::strcmp(name, "avx2") == 0)
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (std::strcmp(name, "avx512") == 0)
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
               __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
               __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq");
#endif
    return false;
}

const Isa& choose() {
    // $FASTGD_ISA may ask for a lower instruction set (for testing and comparison); a name that
    // is unknown, not built or not supported by this CPU is ignored in favour of the best one.
    const char* wanted = std::getenv("FASTGD_ISA");
    if (wanted && *wanted) {
        for (const Isa& isa : kIsas)
            if (std::strcmp(isa.name, wanted) == 0 && cpu_supports(isa.name)) return isa;
    }
    for (const Isa& isa : kIsas)
        if (cpu_supports(isa.name)) return isa;
    return kIsas[kIsaCount - 1];
}

const Isa& active() {
    static const Isa& isa = choose();
    return isa;
}

const char* const kBuiltNames[] = {
#ifdef FASTGD_HAVE_AVX512
    "avx512",
#endif
#ifdef FASTGD_HAVE_AVX2
    "avx2",
#endif
    "baseline",
};

}  // namespace

const Kernels<float>& kernels_f32() { return *active().f32; }
const Kernels<double>& kernels_f64() { return *active().f64; }
const char* active_isa() { return active().name; }
bool isa_supported(const char* name) { return cpu_supports(name); }
const char* const* built_isas(int* count) {
    *count = kIsaCount;
    return kBuiltNames;
}

}  // namespace fastgd
