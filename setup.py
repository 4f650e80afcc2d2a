"""Builds the one optional C extension, ``backends._fused`` (fused in-place
Adam for the NumPy backend; everything else is in pyproject.toml).

It is optional: where no C compiler is found the build prints a warning and
tinynet uses the NumPy version of the same update (same results, slower).
The flags keep every operation IEEE-exact, as NumPy's, so both give the
same bits: no fused multiply-add contraction, no fast-math.
"""

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

EXACT_FLAGS = {
    # (not "-fno-fast-math": GCC then turns -fmath-errno back on, and sqrt stops
    # being vectorized, 3x slower)
    "unix": ["-O3", "-ffp-contract=off", "-fno-math-errno"],
    "msvc": ["/O2", "/fp:precise"],
}


class BuildExt(build_ext):
    def build_extensions(self) -> None:
        flags = EXACT_FLAGS.get(self.compiler.compiler_type, [])
        for ext in self.extensions:
            ext.extra_compile_args = flags
        super().build_extensions()


setup(
    ext_modules=[Extension("backends._fused", ["backends/_fused.c"], optional=True)],
    cmdclass={"build_ext": BuildExt},
)
