"""The positions' Fisher information with the object unknown (the probe known) at full size: the exact Schur
complement of the Gauss-Newton operator, the object's solves made a batch of right-hand sides at a time by
conjugate gradients on a Gauss-Newton operator kept at the truth, with a second-order correction of the solves'
error; for either window model and with another modality's information on the object added (XRF)."""

__all__ = ["ObjectGaussNewton", "poisson_fisher_operator", "nuisance_fisher_full"]

import time

import numpy as np
import scipy.fft as sfft
from mmip_scanprobe import BandLimitedWindows, CubicPatches

from multimodal_ip.errors import ConfigError

from .band_limited_sampler import BandLimitedSampler
from .curvature import window_illumination

#: the window models :class:`ObjectGaussNewton` knows (as :data:`mmip_ptychography.fisher.MODELS`)
MODELS = ("cubic", "fourier")


class _Windows:
    """A window model as a linear map of the object, its position derivatives and its adjoint: the sampler's
    ``sample`` and ``scatter`` over the edge-padded object (:class:`~mmip_scanprobe.CubicPatches`, the
    reconstruction's; :class:`~mmip_ptychography.band_limited_sampler.BandLimitedSampler`, the data's)."""

    def __init__(self, model, shape, window, positions):
        cls = CubicPatches if model == "cubic" else BandLimitedSampler
        self.sampler, self.model, self.window = cls(positions, window, shape), model, tuple(window)
        self.positions = np.asarray(positions, dtype=float)
        self.rows = slice(0, len(self.positions))

    def forward(self, z):
        return self.sampler.sample(self.sampler.pad(z), self.rows)

    def derivatives(self, z):
        if self.model == "cubic":
            return self.sampler.derivatives(self.sampler.pad(z), self.rows)
        return BandLimitedWindows(z, self.window)(self.positions, derivatives=True)[1:]

    def adjoint(self, g, rows):
        acc = np.zeros(self.sampler.padded_shape(), dtype=g.dtype)
        self.sampler.scatter(acc, np.ascontiguousarray(g), rows)
        return self.sampler.unpad_adjoint(acc).copy()


class ObjectGaussNewton:
    r"""The ptychographic Gauss-Newton (Fisher) operator over the complex object with the probe and the positions
    held at given values, and its coupling to the positions.

    .. math:: H_{oo}\,\delta z = \sum_j S_j^H P^* F^H \big[w\, u_j \Re(\bar u_j F P S_j \delta z)\big]
        + i\, H_{\Im}\, \Im\delta z, \qquad u_j = \psi_j/|\psi_j|,\ \psi_j = F P S_j z

    (:math:`S_j` the window at position :math:`p_j`, :math:`F` the orthonormal FFT, :math:`w` the
    :func:`~mmip_ptychography.fisher.fisher_weight`; :math:`H_{\Im}` another modality's information on the
    imaginary part, e.g. XRF). The object is one complex map (``z = x + i a w``: the real pairs ``(x, a w)``).

    Parameters
    ----------
    obj : :obj:`numpy.ndarray`
        Complex object ``(n0, n1)``.
    probe : :obj:`numpy.ndarray`
        Complex probe ``(Np0, Np1)``.
    positions : :obj:`numpy.ndarray`
        ``(J, 2)`` positions, px.
    weight : :obj:`float`
        :func:`~mmip_ptychography.fisher.fisher_weight` of the noise model.
    model : :obj:`str`, optional
        ``"cubic"`` (the reconstruction's windows) or ``"fourier"`` (band-limited: the simulator's).
    imag_fisher : :obj:`tuple`, optional
        ``(apply, diagonal)``: a callable mapping a real ``(n0, n1)`` change of :math:`\Im z` to its Fisher
        product, and its diagonal (``(n0, n1)``), e.g. :func:`poisson_fisher_operator` of the XRF.
    single : :obj:`bool`, optional
        Make the products of :meth:`apply` (the CG solves) in single precision (``complex64`` windows and FFTs:
        about half the time); the position blocks and :meth:`cross` stay in double.

    Raises
    ------
    ConfigError
        An unknown ``model``.
    """

    def __init__(self, obj, probe, positions, weight, model="cubic", imag_fisher=None, single=False):
        if model not in MODELS:
            msg = f"window model must be one of {MODELS}; got {model!r}"
            raise ConfigError(msg)
        self.obj, self.probe = np.asarray(obj, dtype=complex), np.asarray(probe, dtype=complex)
        self.positions = np.asarray(positions, dtype=float)
        self.weight, self.imag_fisher = float(weight), imag_fisher
        self.windows = _Windows(model, self.obj.shape, self.probe.shape, self.positions)
        psi = self._far(self.windows.forward(self.obj))
        a = np.abs(psi)
        self.u = np.where(a > 0, psi / np.where(a > 0, a, 1), 0)
        dpsi = np.stack([self._far(d) for d in self.windows.derivatives(self.obj)], axis=1)
        self.g = (self.u.conj()[:, None] * dpsi).real  # (J, 2, Np0, Np1): Re(conj(u) dpsi/dp)
        self.position_blocks = self.weight * np.einsum("jakl,jbkl->jab", self.g, self.g)
        self.work = np.complex64 if single else np.complex128
        self._u_work = (self.weight * self.u).astype(self.work), self.u.conj().astype(self.work)

    @property
    def size(self) -> int:
        """Number of position coordinates, ``2 J``."""
        return 2 * len(self.positions)

    def _far(self, windows):
        return sfft.fft2(self.probe.astype(windows.dtype) * windows, norm="ortho", workers=1)

    def _back(self, r, rows):
        r = sfft.ifft2(r, norm="ortho", workers=1)
        return self.windows.adjoint(self.probe.conj().astype(r.dtype) * r, rows)

    def apply(self, dz):
        """:math:`H_{oo}\\,\\delta z` for a batch ``(B, n0, n1)`` of complex object changes.

        Parameters
        ----------
        dz : :obj:`numpy.ndarray`
            ``(B, n0, n1)`` complex.

        Returns
        -------
        :obj:`numpy.ndarray`
            ``(B, n0, n1)`` complex.
        """
        out = np.empty_like(dz)
        rows = np.arange(len(self.positions))
        wu, uc = self._u_work
        for b, d in enumerate(dz):
            q = (uc * self._far(self.windows.forward(d.astype(self.work)))).real
            out[b] = self._back(wu * q, rows)
        if self.imag_fisher is not None:
            out += 1j * np.stack([self.imag_fisher[0](d.imag) for d in dz])
        return out

    def columns(self, coordinates):
        """:math:`H_{op}` columns of the position coordinates ``coordinates`` (index ``2 j + k``), ``(C, n0, n1)``.

        Parameters
        ----------
        coordinates : sequence of :obj:`int`
            Position coordinates.

        Returns
        -------
        :obj:`numpy.ndarray`
            ``(C, n0, n1)`` complex.
        """
        out = []
        for c in coordinates:
            j, k = divmod(int(c), 2)
            r = self.weight * self.u[j : j + 1] * self.g[j : j + 1, k]
            out.append(self._back(r, np.array([j])))
        return np.stack(out)

    def cross(self, y):
        """:math:`H_{po}\\, y` for one complex object change ``y`` ``(n0, n1)``: ``(2 J,)``.

        Parameters
        ----------
        y : :obj:`numpy.ndarray`
            ``(n0, n1)`` complex.

        Returns
        -------
        :obj:`numpy.ndarray`
            ``(2 J,)`` ordered ``(p_0 row, p_0 col, p_1 row, ...)``.
        """
        q = (self.u.conj() * self._far(self.windows.forward(y))).real
        return self.weight * np.einsum("jakl,jkl->ja", self.g, q).ravel()

    def diagonal(self):
        """Jacobi preconditioner: half the illumination times the weight on both parts, plus the imaginary part's
        extra diagonal; ``(real, imaginary)`` each ``(n0, n1)``.

        Returns
        -------
        :obj:`tuple` of :obj:`numpy.ndarray`
        """
        corners = np.rint(self.positions).astype(int)
        light = 0.5 * self.weight * window_illumination(self.obj.shape, np.abs(self.probe) ** 2, corners)
        extra = light + (0.0 if self.imag_fisher is None else self.imag_fisher[1])
        fill = max(float(light.max()), 1.0)  # pixels nothing sees (null: the right-hand sides do not reach them)
        return np.where(light > 0, light, fill), np.where(extra > 0, extra, fill)


def poisson_fisher_operator(matvec, rmatvec, mean, photons_per_unit, floor=1e-12):
    r"""Fisher information of Poisson counts :math:`N \sim \mathrm{Poisson}(p\, M w)` of a linear model ``M``
    about ``w``: :math:`p\, M^T \mathrm{diag}(1 / M w) M`, as a product and its diagonal.

    Parameters
    ----------
    matvec, rmatvec : callable
        :math:`M` on a flat ``w`` and :math:`M^T` on flat counts (e.g. a pylops operator's).
    mean : :obj:`numpy.ndarray`
        :math:`M w` at the truth (flat); entries ``<= floor`` carry no information (left out).
    photons_per_unit : :obj:`float`
        :math:`p`.
    floor : :obj:`float`, optional
        Smallest mean counted.

    Returns
    -------
    apply : callable
        ``apply(dw) -> p M^T (M dw / mean)`` (shape of ``dw`` kept).
    diagonal_of : callable
        ``diagonal_of(square_rmatvec) -> diag``: given :math:`(M\circ M)^T` (the model with its kernel squared),
        the diagonal :math:`p \sum_i M_{ik}^2 / \mathrm{mean}_i`.
    """
    mean = np.asarray(mean, dtype=float).ravel()
    inv = np.where(mean > floor, 1.0 / np.where(mean > floor, mean, 1.0), 0.0) * float(photons_per_unit)

    def apply(dw):
        return np.asarray(rmatvec(inv * np.asarray(matvec(np.ravel(dw))))).reshape(np.shape(dw))

    def diagonal_of(square_rmatvec):
        return np.asarray(square_rmatvec(inv))

    return apply, diagonal_of


def _pcg(gn, rhs, precond, rtol, maxiter, x0=None):
    """Conjugate gradients on ``gn.apply`` for a batch of right-hand sides (from ``x0``), each with its own steps;
    converged ones stop. Returns the solutions, their recursive residuals and the iterations each took."""
    def dot(a, b):
        return np.einsum("bij,bij->b", a.real, b.real) + np.einsum("bij,bij->b", a.imag, b.imag)

    x, r = np.zeros_like(rhs), rhs.copy()
    if x0 is not None:
        x[:] = x0
        r -= gn.apply(x)
    norm0 = np.sqrt(dot(rhs, rhs))
    z = precond(r)
    p, rz = z.copy(), dot(r, z)
    iters = np.zeros(len(rhs), dtype=int)
    active = np.flatnonzero(norm0 > 0)
    for _ in range(maxiter):
        if active.size == 0:
            break
        ap = gn.apply(p[active])
        alpha = rz[active] / dot(p[active], ap)
        x[active] += alpha[:, None, None] * p[active]
        r[active] -= alpha[:, None, None] * ap
        iters[active] += 1
        done = np.sqrt(dot(r[active], r[active])) <= rtol * norm0[active]
        active = active[~done]
        if active.size == 0:
            break
        z = precond(r[active])
        rz_new = dot(r[active], z)
        p[active] = z + (rz_new / rz[active])[:, None, None] * p[active]
        rz[active] = rz_new
    return x, r, iters


def nuisance_fisher_full(gn, rtol=1e-2, batch=8, maxiter=500, corrected=True, start=None, log=None):
    r"""The exact Schur complement :math:`S = H_{pp} - H_{po} H_{oo}^{+} H_{op}` of all scan positions with the
    object unknown (the probe known), from an :class:`ObjectGaussNewton`: one CG solve per position coordinate,
    ``batch`` of them at a time (Jacobi-preconditioned).

    With ``corrected`` the solves' error enters only at second order: with :math:`Y_j \approx H^{+} b_j` and its
    residual :math:`r_j = b_j - H Y_j`, :math:`b_i^T H^{+} b_j = b_i^T Y_j + Y_i^T r_j - e_i^T H e_j`
    (:math:`e` the solves' errors), symmetric in :math:`i, j`; so a loose ``rtol`` (1e-2) suffices. The global
    phase of the object (with no other modality) is a null mode of :math:`H_{oo}` the right-hand sides do not
    reach. The common shift of the scan stays in :math:`S` (:func:`~mmip_ptychography.fisher.nuisance_bounds`
    removes it).

    Parameters
    ----------
    gn : :class:`ObjectGaussNewton`
        The operator at the point of the bound.
    rtol : :obj:`float`, optional
        Relative residual at which each solve stops.
    batch : :obj:`int`, optional
        Right-hand sides solved together.
    maxiter : :obj:`int`, optional
        Iteration cap of each solve.
    corrected : :obj:`bool`, optional
        Add the second-order correction :math:`Y_i^T r_j`.
    start : :obj:`numpy.ndarray`, optional
        ``(2J, 2 n0 n1)`` solutions to start the solves from (``info["solutions"]`` of a run at a looser
        ``rtol``). Not those of the bound without another modality: its weakly determined modes are far off with
        it (more iterations than from zero, measured on a 64 px case).
    log : callable, optional
        Called with a progress line after every batch.

    Returns
    -------
    schur : :obj:`numpy.ndarray`
        ``(2J, 2J)`` symmetric, ordered ``(p_0 row, p_0 col, p_1 row, ...)``, in 1/px^2.
    info : :obj:`dict`
        ``iterations`` (per column), ``unconverged`` (count), ``seconds``, ``correction`` (the largest entry of the
        correction relative to the largest of :math:`S`), ``solutions`` (``(2J, 2 n0 n1)`` float32: the real and
        imaginary parts of each solve).
    """
    n2 = gn.size
    d_re, d_im = gn.diagonal()

    def precond(r):
        return r.real / d_re + 1j * (r.imag / d_im)

    cross = np.zeros((n2, n2))
    flat = (n2, 2 * gn.obj.size)
    ys, rs = np.zeros(flat, dtype=np.float32), np.zeros(flat, dtype=np.float32)
    iters = np.zeros(n2, dtype=int)
    t0 = time.perf_counter()
    for s in range(0, n2, int(batch)):
        cols = np.arange(s, min(s + int(batch), n2))
        x0 = None if start is None else start[cols, : gn.obj.size] + 1j * start[cols, gn.obj.size :]
        x0 = None if x0 is None else x0.reshape(len(cols), *gn.obj.shape)
        y, r, it = _pcg(gn, gn.columns(cols), precond, rtol, maxiter, x0)
        iters[cols] = it
        for c, yc, rc in zip(cols, y, r, strict=True):
            cross[:, c] = gn.cross(yc)
            ys[c], rs[c] = np.concatenate([yc.real.ravel(), yc.imag.ravel()]), \
                np.concatenate([rc.real.ravel(), rc.imag.ravel()])
        if log is not None:
            log(f"columns {cols[-1] + 1}/{n2}: CG iterations {it.min()}-{it.max()}, "
                f"{time.perf_counter() - t0:.0f} s")
    hpp = np.zeros((n2, n2))
    for j, block in enumerate(gn.position_blocks):
        hpp[2 * j : 2 * j + 2, 2 * j : 2 * j + 2] = block
    correction = (ys.astype(float) @ rs.astype(float).T) if corrected else np.zeros((n2, n2))
    schur = hpp - cross - correction
    schur = 0.5 * (schur + schur.T)
    info = {"iterations": iters, "unconverged": int(np.sum(iters >= maxiter)),
            "seconds": time.perf_counter() - t0,
            "correction": float(np.abs(correction).max() / max(np.abs(schur).max(), 1e-300)), "solutions": ys}
    return schur, info
