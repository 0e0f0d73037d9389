// One instruction set's build of the kernels: CMake compiles this file once per instruction set,
// defining FASTGD_ISA (the namespace), FASTGD_VEC_BYTES, FASTGD_ROW_BLOCK and FASTGD_UNROLL, and
// passing that instruction set's compiler flags (see CMakeLists.txt).
#include "kernels_impl.hpp"
