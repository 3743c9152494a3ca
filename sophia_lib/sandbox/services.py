"""Start the sandbox's two servers together: the vendor API simulator and the identity provider.

Used by `sophia sandbox serve` and `sophia demo`; tests start the servers they need directly.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sophia_lib.config import SophiaConfig
from sophia_lib.sandbox.company import Company
from sophia_lib.sandbox.idp import IdentityProvider, IdpServer, demo_client
from sophia_lib.sandbox.simulator.app import Sandbox
from sophia_lib.sandbox.simulator.server import SandboxServer

Echo = Callable[[str], None]


def company_cache_dir(config: SophiaConfig, size: str | None = None, seed: int | None = None) -> Path:
    """Where the company for (size, seed) is cached; both default to the configured ones."""
    size = size or config.sandbox.size
    seed = config.sandbox.seed if seed is None else seed
    return config.var_dir / "sandbox" / f"{size}-{seed}"


def prepare_company(config: SophiaConfig, echo: Echo = print) -> Company:
    """Load the cached company for (size, seed), or generate and cache it."""
    from sophia_lib.sandbox.generator import generate
    from sophia_lib.sandbox.store import load, save

    folder = company_cache_dir(config)
    if (folder / "manifest.json").exists():
        echo(f"sandbox: using the cached {config.sandbox.size} company in {folder}")
        return load(folder)
    echo(f"sandbox: generating the {config.sandbox.size} company (seed {config.sandbox.seed}) …")
    started = time.perf_counter()
    company = generate(config.sandbox.size, seed=config.sandbox.seed)
    save(company, folder)
    echo(f"sandbox: generated in {time.perf_counter() - started:.1f} s, cached in {folder}")
    return company


@dataclass
class SandboxServices:
    """The running simulator and identity provider over one company."""

    sandbox: Sandbox
    simulator: SandboxServer
    provider: IdentityProvider
    idp: IdpServer

    def stop(self) -> None:
        self.idp.stop()
        self.simulator.stop()

    def describe(self) -> list[str]:
        """What to open and the demo credentials, one line each."""
        base = self.simulator.base_url
        lines = [f"vendor simulator   {base}/<vendor>   (control API: {base}/_control)"]
        for name, vendor in self.sandbox.vendors.items():
            creds = "  ".join(f"{k}={v}" for k, v in vendor.credentials().items())
            lines.append(f"  {name:<11} {self.simulator.url(name)}   {creds}")
        lines.append(f"identity provider  {self.idp.issuer}/.well-known/openid-configuration")
        for user in self.provider.users.values():
            lines.append(f"  {user.username:<8} password {user.password:<14} groups {', '.join(user.groups)}")
        return lines


def store_demo_credentials(config: SophiaConfig, sandbox: Sandbox) -> int:
    """Put every vendor's demo credentials into the credential store, as `sophia sandbox serve` prints them."""
    from sophia_lib.secrets import open_store, sandbox_secret_name

    store = open_store(config)
    present = set(store.names())
    count = 0
    for vendor_name, vendor in sandbox.vendors.items():
        for key, value in {**vendor.credentials(), **vendor.demo_options()}.items():
            name = sandbox_secret_name(vendor_name, key)
            if name not in present or store.get(name) != str(value):
                store.set(name, str(value))
            count += 1
    return count


def start_sandbox_services(config: SophiaConfig, company: Company, persist: bool = True) -> SandboxServices:
    """Start both servers on the configured host and ports.

    With ``persist``, every advance of the clock is saved to the company cache, so the next start
    (and `sophia sandbox advance` without a running server) continues from there.
    """
    from sophia_lib.sandbox.store import save

    folder = company_cache_dir(config)
    sandbox = Sandbox(company, on_advance=(lambda c: save(c, folder)) if persist else None)
    simulator = SandboxServer(sandbox, config.sandbox.host, config.sandbox.port).start()
    try:
        provider = IdentityProvider(issuer=f"http://{config.sandbox.host}:{config.sandbox.idp_port}",
                                    clients=[demo_client([config.hub.oauth_callback_url()])],
                                    key_path=config.var_dir / "sandbox" / "idp-key.pem")
        idp = IdpServer(provider, config.sandbox.host, config.sandbox.idp_port).start()
    except BaseException:
        simulator.stop()
        raise
    store_demo_credentials(config, sandbox)
    return SandboxServices(sandbox, simulator, provider, idp)
