/* VECTOR_CLONES: a hot loop's function compiled also for AVX-512 and AVX2, the best one picked when
 * the program loads (GCC's target_clones), for 2-3x the elements per second. Only for loops whose
 * results do not depend on the vector width: integer arithmetic, IEEE adds, multiplies, compares
 * and sqrt (-std=c11 fuses no multiply-add into an FMA). */
#ifndef SL_VECTOR_CLONES_H
#define SL_VECTOR_CLONES_H

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define VECTOR_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define VECTOR_CLONES
#endif

#endif
