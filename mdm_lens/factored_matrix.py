"""A low-rank matrix kept as its two factors, `A @ B`, as TransformerLens's `FactoredMatrix` (`model.QK`, `model.OV`):
the product of a `[..., d_model, d_head]` and a `[..., d_head, d_model]` factor is d_model x d_model but has rank
d_head, so spectra and norms are computed from the small side. Leading dims broadcast (layers, heads)."""

from __future__ import annotations

import torch


class FactoredMatrix:
    """`A [..., ldim, mdim] @ B [..., mdim, rdim]`, never formed unless `.AB` is asked for."""

    def __init__(self, A: torch.Tensor, B: torch.Tensor):
        if A.shape[-1] != B.shape[-2]:
            raise ValueError(f"factors do not chain: A {tuple(A.shape)} @ B {tuple(B.shape)}")
        self.A, self.B = A, B
        self.ldim, self.mdim, self.rdim = A.shape[-2], A.shape[-1], B.shape[-1]
        self.shape = torch.broadcast_shapes(A.shape[:-2], B.shape[:-2]) + (self.ldim, self.rdim)
        self.A = A.broadcast_to(self.shape[:-2] + A.shape[-2:])
        self.B = B.broadcast_to(self.shape[:-2] + B.shape[-2:])

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def AB(self) -> torch.Tensor:
        """The full product `[..., ldim, rdim]`."""
        return self.A @ self.B

    @property
    def BA(self) -> torch.Tensor:
        """`B @ A`, `[..., mdim, mdim]`: the same nonzero eigenvalues as `AB` (needs ldim == rdim)."""
        if self.ldim != self.rdim:
            raise ValueError(f"BA needs a square product; this one is {self.ldim} x {self.rdim}")
        return self.B @ self.A

    @property
    def T(self) -> FactoredMatrix:
        return FactoredMatrix(self.B.transpose(-2, -1), self.A.transpose(-2, -1))

    def __matmul__(self, other) -> FactoredMatrix:
        if isinstance(other, FactoredMatrix):
            return (self @ other.A) @ other.B
        if other.dim() == 1:
            return self.A @ (self.B @ other)  # a vector: a plain tensor, as TL returns
        return FactoredMatrix(self.A, self.B @ other)

    def __rmatmul__(self, other) -> FactoredMatrix:
        if other.dim() == 1:
            return (other @ self.A) @ self.B
        return FactoredMatrix(other @ self.A, self.B)

    def __mul__(self, scalar: float) -> FactoredMatrix:
        return FactoredMatrix(self.A * scalar, self.B)

    __rmul__ = __mul__

    def __getitem__(self, idx) -> FactoredMatrix:
        """Index the leading dims only (`OV[layer, head]`)."""
        idx = idx if isinstance(idx, tuple) else (idx,)
        if len(idx) > self.ndim - 2:
            raise IndexError(f"index {idx} reaches into the matrix dims; index the leading {self.ndim - 2} dims only")
        return FactoredMatrix(self.A[idx], self.B[idx])

    def svd(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`U [..., ldim, mdim]`, `S [..., mdim]`, `Vh [..., mdim, rdim]` with `AB = U diag(S) Vh`, from the two
        factors' SVDs (mdim x mdim work, never the full product)."""
        Ua, Sa, Vha = torch.linalg.svd(self.A, full_matrices=False)
        Ub, Sb, Vhb = torch.linalg.svd(self.B, full_matrices=False)
        middle = Sa[..., :, None] * (Vha @ Ub) * Sb[..., None, :]
        Um, Sm, Vhm = torch.linalg.svd(middle, full_matrices=False)
        return Ua @ Um, Sm, Vhm @ Vhb

    @property
    def S(self) -> torch.Tensor:
        return self.svd()[1]

    @property
    def U(self) -> torch.Tensor:
        return self.svd()[0]

    @property
    def Vh(self) -> torch.Tensor:
        return self.svd()[2]

    @property
    def eigenvalues(self) -> torch.Tensor:
        """The mdim eigenvalues of `BA` (complex): the nonzero ones of `AB`."""
        return torch.linalg.eigvals(self.BA)

    def norm(self) -> torch.Tensor:
        """Frobenius norm of the product, from the singular values."""
        return self.S.pow(2).sum(-1).sqrt()

    def __repr__(self) -> str:
        return f"FactoredMatrix(shape={tuple(self.shape)}, mdim={self.mdim})"
