"""DVC stage `train_affinity`: AffinityNet on the generated objects' own attention maps (no ground
truth); the assess stage scores the refinement with its affinities beside the self-attention's."""
from freemask.assess.learned_affinity import train_on_objects
from freemask.masks.affinity_net import save_affinity_net
from freemask.runtime import run_stage, set_threads, write_json


def main(p):
    set_threads(p.affinity_net.threads)
    net, summary = train_on_objects("data/generated/objects", p.affinity_net)
    save_affinity_net(net, "models/affinity_net")
    write_json("metrics/details/affinity_net.json", summary)
    write_json("metrics/affinity_net.json", {k: summary[k] for k in ("loss_last_steps", "confident_object_share")})


if __name__ == "__main__":
    run_stage(main)
