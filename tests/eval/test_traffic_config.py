"""The typed traffic config: defaults from the simulator and the detectors, TOML over presets, and
what each stored artifact's key depends on."""
from antidistill.eval.core.config import as_dict, overlay
from antidistill.eval.traffic.config import PRESETS, TrafficConfig, load
from antidistill.eval.traffic.detectors.combined import PARAMS
from antidistill.eval.traffic.experiment import logs_inputs, traffic_store
from antidistill.eval.traffic.simulate import SimConfig


def test_sim_and_detector_defaults_are_the_simulators_and_the_detectors():
    cfg = TrafficConfig()
    assert as_dict(cfg.sim) == {k: v for k, v in SimConfig().as_dict().items() if k not in ("seed", "prefix")}
    assert as_dict(cfg.detectors) == PARAMS
    sc = cfg.sim_config(seed=5, n_legit=7)
    assert isinstance(sc, SimConfig) and sc.seed == 5 and sc.n_legit == 7 and sc.days == SimConfig().days


def test_toml_over_its_preset(tmp_path):
    p = tmp_path / "mine.toml"
    p.write_text('preset = "traffic-smoke"\nseed = 3\n[sim]\ndays = 4\n[evasion]\ncover_share = [0.5]\n')
    cfg = load(p)
    assert cfg.name == "mine" and cfg.seed == 3 and cfg.sim.days == 4.0 and isinstance(cfg.sim.days, float)
    assert cfg.sim.n_legit == 300 and cfg.evasion.cover_share == (0.5,) and cfg.evasion.jitter_s == (20.0, 3600.0)
    p.write_text('name = "other"\n')
    assert load(p, "traffic-smoke").name == "other"


def test_each_artifact_is_keyed_by_what_it_depends_on(tmp_path):
    store = traffic_store(tmp_path)
    base = load(preset="traffic-smoke")
    elsewhere = overlay(TrafficConfig, PRESETS["traffic-smoke"], {"detectors": {"mmd_perm": 60}, "seed": 1,
                                                                   "evasion": {"n_campaigns": 1}})
    assert store.path("logs", logs_inputs(base)) == store.path("logs", logs_inputs(elsewhere))
    other_world = overlay(TrafficConfig, PRESETS["traffic-smoke"], {"sim": {"ban_rate": 0.2}})
    assert store.path("logs", logs_inputs(base)) != store.path("logs", logs_inputs(other_world))
