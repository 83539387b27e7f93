"""A convertible bond with European conversion, a bond-floor credit spread and a simple
jump-to-default credit model, priced in closed form so that every Greek is autodiff.

Contract (`Convertible`). Face `face` (currency) repaid at `maturity` (years), or, at the
holder's choice AT MATURITY ONLY (European conversion: no early conversion, no call or put
provisions), `conversion_ratio` shares instead. Coupons accrue at `coupon` x face per year
and are paid with the face at maturity (c F T in all): so, without default, the payoff is

    max(face, conversion_ratio x S_T) + coupon x face x maturity,

a function of S_T, which `hj.hedge` can hold like any European claim. (Periodic coupons
reinvested at the rate differ from this only by the interest earned on them.)

Credit (two layers, both optional; units per year, continuously compounded):
- `credit_spread` s: the Tsiveriotis and Fernandes (1998) split. The cash the bond pays
  (the face when not converted, the coupons) is discounted at rate + s; what is paid in
  shares (conversion) is discounted at the rate. No default event: s is the market's price
  of the issuer's credit on the bond floor.
- `hazard` lambda, `default_jump` eta, `recovery` R: a reduced-form jump to default
  (Ayache, Forsyth and Vetzal 2003; Andersen and Buffum 2003). Default is the first event
  of a Poisson process of intensity lambda; at default the share falls by the fraction eta
  (S -> (1 - eta) S; eta = 1: to zero), the conversion right and the coupons are lost, and
  the holder receives R x face at once. Before default the share drifts at
  r - q + lambda eta (the compensator of the jump, as in Merton 1976), so the total share
  price stays a martingale after discounting and dividends.

Price at time t, tau = maturity - t, K = face / conversion_ratio (the conversion price),
S the pre-default spot, q' = q - lambda eta, and C, Dig the model's European call and
cash-or-nothing digital (paying 1 when S_T > K) priced with dividend yield q':

    V = e^{-lambda tau} [ face e^{-(r+s) tau} + ratio C(K; q') + face (1 - e^{-s tau}) Dig(K; q') ]
        + coupon face maturity e^{-(r+s+lambda) tau}
        + R face lambda (1 - e^{-(r+lambda) tau}) / (r + lambda).

The bracket is the Tsiveriotis-Fernandes value of max(face, ratio S_T): the risky bond
floor face e^{-(r+s) tau}, the conversion option (ratio calls struck at K), and the part of
the face that is converted, which is no longer cash and is discounted at the rate. With
s = 0 and lambda = 0 it is face e^{-r tau} + ratio x Black-Scholes call (Ingersoll 1977).
The last term is the recovery leg, paid at default. Registered for `BlackScholes` (closed
form) and `Merton` (its series for C and Dig; the jump-to-default is then in addition to
Merton's own jumps).

Greeks by `hj.greeks` (autodiff): delta in shares per unit of the bond, vega per 1.00 of vol;
`jax.grad` with respect to the instrument's fields gives the credit sensitivities
(d V / d credit_spread, d V / d hazard).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._instruments import AbstractInstrument, Digital, EuropeanCall
from ._models.black_scholes import BlackScholes
from ._models.merton import Merton
from ._pricing.registry import _pricer, register_pricer
from ._validate import check, check_nonnegative, check_positive, float_param, is_concrete


class Convertible(AbstractInstrument):
    """A convertible bond, converted (or not) at maturity only; see the module docstring
    for the contract, the credit model and the price formula.

    Args:
        face: face value repaid at maturity (currency, > 0).
        conversion_ratio: shares received per bond on conversion (> 0); the conversion
            price is face / conversion_ratio (`strike`).
        maturity: years to maturity (> 0).
        coupon: annual coupon rate on face (>= 0; 0.02 = 2% a year), paid at maturity.
        credit_spread: spread over the rate discounting the bond's cash (continuous, per
            year, >= 0; Tsiveriotis-Fernandes).
        hazard: default intensity (per year, >= 0; 0: no default).
        recovery: fraction of face paid at default (in [0, 1]).
        default_jump: fraction the share price loses at default (in [0, 1]; 1: to zero).

    Raises:
        ValueError: naming the parameter and its allowed range, for any value outside it.

    Payoff at maturity when not in default: max(face, conversion_ratio x S_T) + coupon x
    face x maturity (currency per bond). A bond held in a `Book` is long for quantity > 0.

    Example:
        >>> import hedgejax as hj
        >>> cb = hj.Convertible(100.0, 0.8, 1.0, coupon=0.02, credit_spread=0.03)
        >>> model = hj.BlackScholes(spot=100.0, vol=0.25, rate=0.03)
        >>> round(float(hj.price(model, cb)), 2)
        99.36
    """

    face: jax.Array = eqx.field(converter=float_param("face"))
    conversion_ratio: jax.Array = eqx.field(converter=float_param("conversion_ratio"))
    maturity: jax.Array = eqx.field(converter=float_param("maturity"))
    coupon: jax.Array = eqx.field(converter=float_param("coupon"), default=0.0)
    credit_spread: jax.Array = eqx.field(converter=float_param("credit_spread"), default=0.0)
    hazard: jax.Array = eqx.field(converter=float_param("hazard"), default=0.0)
    recovery: jax.Array = eqx.field(converter=float_param("recovery"), default=0.4)
    default_jump: jax.Array = eqx.field(converter=float_param("default_jump"), default=1.0)

    def __check_init__(self):
        check_positive("face", self.face)
        check_positive("conversion_ratio", self.conversion_ratio)
        check_positive("maturity", self.maturity)
        check_nonnegative("coupon", self.coupon)
        check_nonnegative("credit_spread", self.credit_spread)
        check_nonnegative("hazard", self.hazard)
        check("recovery", self.recovery, lambda a: (a >= 0) & (a <= 1), "in [0, 1]")
        check("default_jump", self.default_jump, lambda a: (a >= 0) & (a <= 1), "in [0, 1]")
        # The conversion option's forward grows like e^{hazard x default_jump x maturity}
        # before survival e^{-hazard x maturity} scales it back: past 50 (survival ~2e-22,
        # a bond that surely defaults) float32 overflows, so such bonds are refused by name.
        lam_t = self.hazard * self.maturity
        if is_concrete(lam_t) and float(np.max(np.asarray(lam_t))) > _MAX_HAZARD_YEARS:
            raise ValueError(
                f"hazard x maturity must be <= {_MAX_HAZARD_YEARS:g} (survival "
                f"e^-{_MAX_HAZARD_YEARS:g}: default is certain), got hazard="
                f"{float(np.max(np.asarray(self.hazard))):g} with maturity="
                f"{float(np.max(np.asarray(self.maturity))):g}")

    @property
    def strike(self) -> jax.Array:
        """The conversion price face / conversion_ratio (currency per share): the strike of
        the embedded calls."""
        return self.face / self.conversion_ratio

    @property
    def coupons(self) -> jax.Array:
        """All coupons, paid at maturity: coupon x face x maturity (currency)."""
        return self.coupon * self.face * self.maturity

    def payoff(self, spot: jax.Array) -> jax.Array:
        return jnp.maximum(self.face, self.conversion_ratio * spot) + self.coupons

    def smoothed_payoff(self, spot: jax.Array, width: jax.Array) -> jax.Array:
        excess = self.conversion_ratio * (spot - self.strike)
        return (self.face + self.coupons
                + self.conversion_ratio * width * jax.nn.softplus(excess / (
                    self.conversion_ratio * width)))


_MAX_HAZARD_YEARS = 50.0


def _annuity(rate: jax.Array, tau: jax.Array) -> jax.Array:
    """int_0^tau e^{-rate u} du, finite and differentiable at rate = 0 (= tau)."""
    x = rate * tau
    small = jnp.abs(x) < 1e-6
    x_safe = jnp.where(small, 1.0, x)
    return jnp.where(small, tau * (1.0 - 0.5 * x), tau * -jnp.expm1(-x_safe) / x_safe)


def convertible_value(model, inst: Convertible, log_spot: jax.Array,
                      tau: jax.Array) -> jax.Array:
    """The module docstring's price, with `model`'s own call and digital pricers (any model
    with a `div` field and both registered); tau <= 0 gives the payoff."""
    tau_pos = jnp.maximum(tau, 0.0)
    r, s, lam = model.rate, inst.credit_spread, inst.hazard
    # Pre-default share: drift r - q + lambda eta, i.e. dividend yield q - lambda eta.
    equity_model = eqx.tree_at(lambda m: m.div, model, model.div - lam * inst.default_jump)
    call = EuropeanCall(inst.strike, inst.maturity)
    digital = Digital(inst.strike, inst.maturity)
    calls = _pricer(equity_model, call)(equity_model, call, log_spot, tau)
    converted = _pricer(equity_model, digital)(equity_model, digital, log_spot, tau)
    survival = jnp.exp(-lam * tau_pos)
    conversion = (inst.face * jnp.exp(-(r + s) * tau_pos) + inst.conversion_ratio * calls
                  - inst.face * jnp.expm1(-s * tau_pos) * converted)
    coupons = inst.coupons * jnp.exp(-(r + s + lam) * tau_pos)
    recovered = inst.recovery * inst.face * lam * _annuity(r + lam, tau_pos)
    return survival * conversion + coupons + recovered


register_pricer(BlackScholes, Convertible)(convertible_value)
register_pricer(Merton, Convertible)(convertible_value)
